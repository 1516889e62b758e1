// sinkhole console: the little script the pages use. Served from the daemon (the CSP allows
// no inline script); every page works without it.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // A select marked data-autosubmit submits its form when changed (timeline span, triage view).
  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form.submit());
  }
  // An input with data-filter="selector" hides the matching rows that do not contain its text.
  for (const input of document.querySelectorAll("input[data-filter]")) {
    const rows = () => document.querySelectorAll(input.dataset.filter);
    input.addEventListener("input", () => {
      const needle = input.value.trim().toLowerCase();
      for (const row of rows()) {
        row.classList.toggle("hidden", needle !== "" && !row.textContent.toLowerCase().includes(needle));
      }
    });
  }
});
