#!/usr/bin/env bash
# Run one atheris target over its seed corpus for a bounded time; new corpus entries and any
# crash (with its reproducer file) go to a fresh temp folder, never into the checked-in seeds.
#   tests/fuzz/run.sh packet|lists [SECONDS] [more libFuzzer flags, e.g. -jobs=4]
# SINKHOLE_FUZZ_IGNORE=tag,tag lets a long run go on past bugs already reported.
set -euo pipefail
cd "$(dirname "$0")/../.."

target=${1:-}
seconds=${2:-60}
case "$target" in
    packet) seeds=tests/fuzz/corpus/packets; max_len=4096 ;;
    lists) seeds=tests/fuzz/corpus/lists; max_len=16384 ;;
    *) echo "usage: $0 packet|lists [SECONDS] [libFuzzer flags]" >&2; exit 2 ;;
esac
shift $(( $# > 1 ? 2 : 1 ))

python=${PYTHON:-python3}
[ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && python=.venv/bin/python
"$python" -c "import atheris" 2>/dev/null \
    || { echo "atheris is not installed: $python -m pip install atheris" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/sinkhole-fuzz-$target-XXXXXX")
mkdir -p "$work/corpus" "$work/crashes"
export SINKHOLE_FUZZ_TMP="$work"
echo "fuzzing $target for ${seconds}s; new corpus in $work/corpus, crashes in $work/crashes"
# -timeout: one input taking 10 s is a hang, reported like a crash.
exec "$python" "tests/fuzz/fuzz_$target.py" -max_total_time="$seconds" -timeout=10 \
    -max_len="$max_len" -dict="tests/fuzz/$target.dict" -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/crashes/" "$@" "$work/corpus" "$seeds"
