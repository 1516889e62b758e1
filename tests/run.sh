#!/usr/bin/env bash
# Install everything the test suite needs (Debian packages, then Python packages in .venv)
# and run the whole suite. `.ci/run` calls this; so does the README's second command.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

# Debian packages the tests drive as real peers or tools.
DEB_PACKAGES=(dnsutils git systemd prometheus prometheus-alertmanager dnsperf knot unbound
              knot-dnsutils curl openssl
              chromium chromium-driver)

missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done
python3 -c "import ensurepip" 2>/dev/null || missing+=(python3-venv)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'

.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
