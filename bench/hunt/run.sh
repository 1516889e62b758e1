#!/usr/bin/env bash
# The hunting evaluation (issue 14): generate an office month (cached by seed), replay it through
# the hunter directly and through `sinkhole import`, write bench/results/hunt.{md,json}.
#
#   bash bench/hunt/run.sh              # 300 devices x 30 days (5.9M queries)
#   QUICK=1 bash bench/hunt/run.sh      # 50 devices x 10 days, under a minute, into
#                                       # bench/hunt/results-quick/
#   SEED=7 MODE=direct bash bench/hunt/run.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$(dirname "$here")")"
cd "$root"
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
    if [[ -x "$root/.venv/bin/python" ]]; then PYTHON="$root/.venv/bin/python"; else PYTHON=python3; fi
fi
args=(--seed "${SEED:-14}" --mode "${MODE:-both}")
cmd="bash bench/hunt/run.sh"
if [[ "${QUICK:-0}" == 1 ]]; then
    args+=(--quick)
    cmd="QUICK=1 $cmd"
fi
exec "$PYTHON" "$here/run.py" "${args[@]}" --command "$cmd" "$@"
