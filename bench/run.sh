#!/usr/bin/env bash
# One command for the whole benchmark: install what is missing, build the responder, generate
# the data (fixed seed), run sinkhole, dnsmasq and unbound side by side, write bench/results/.
#
#   bash bench/run.sh                  # ROUNDS=3 DURATION=10 (about 15 minutes)
#   QUICK=1 bash bench/run.sh          # smoke run: 1 round of 3 s, into bench/results-quick/
#   ROUNDS=5 DURATION=20 bash bench/run.sh
#
# All traffic stays on 127.0.0.1; every load is bounded by dnsperf's -l.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
cd "$root"
# The project's own virtual environment (the README's test command makes the same one): a
# fresh clone has no sinkhole installed anywhere, and the system Python is not ours to change.
if [[ -z "${PYTHON:-}" ]]; then
    [[ -x "$root/.venv/bin/python" ]] || python3 -m venv "$root/.venv"
    PYTHON="$root/.venv/bin/python"
fi
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
ROUNDS_1M="${ROUNDS_1M:-2}"
PROFILE_SECONDS="${PROFILE_SECONDS:-6}"
RESULTS="${RESULTS:-$here/results}"
if [[ "${QUICK:-0}" == 1 ]]; then
    ROUNDS=1 DURATION=3 ROUNDS_1M=1 PROFILE_SECONDS=3
    RESULTS="${RESULTS_QUICK:-$here/results-quick}"
fi

need=()
command -v dnsperf >/dev/null || need+=(dnsperf)
command -v dnsmasq >/dev/null || need+=(dnsmasq-base)   # the binary, without a system service
command -v unbound >/dev/null || need+=(unbound)
command -v cc >/dev/null || need+=(gcc libc6-dev)
if ((${#need[@]})); then
    echo "run.sh: installing ${need[*]}" >&2
    # Never let the packages start their system services (port 53) on this machine.
    own_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
        own_policy=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    if ((own_policy)); then rm -f /usr/sbin/policy-rc.d; fi
fi
"$PYTHON" -c "import matplotlib" 2>/dev/null || "$PYTHON" -m pip install -q matplotlib
command -v py-spy >/dev/null || "$PYTHON" -m pip install -q py-spy
# From a neutral folder: run from the repo root, `import sinkhole` finds the source tree even
# when nothing is installed, and the harness (run from bench/) would then not find it.
(cd / && "$PYTHON" -c "import sinkhole") 2>/dev/null || "$PYTHON" -m pip install -q -e "$root"

mkdir -p "$here/build" "$RESULTS"
cc -O2 -Wall -Wextra -o "$here/build/responder" "$here/responder.c"
"$PYTHON" "$here/gen.py" --out "$here/data"

cmd="ROUNDS=$ROUNDS DURATION=$DURATION ROUNDS_1M=$ROUNDS_1M bash bench/run.sh"
[[ "${QUICK:-0}" == 1 ]] && cmd="QUICK=1 bash bench/run.sh"
exec "$PYTHON" "$here/harness.py" --responder "$here/build/responder" --data "$here/data" \
    --results "$RESULTS" --rounds "$ROUNDS" --rounds-1m "$ROUNDS_1M" --duration "$DURATION" \
    --profile-seconds "$PROFILE_SECONDS" --command "$cmd"
