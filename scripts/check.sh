#!/usr/bin/env bash
# Run every test: the optimized build's full suite (unit, device, integration)
# and the unit + device suites again under ASan+UBSan.  Ends with the line
# "N passed, N failed, N skipped"; exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."

build=${BUILD:-build}
asan=${BUILD_ASAN:-build-asan}

meson setup "$asan" -Dbuildtype=debug -Db_sanitize=address,undefined \
	-Db_lundef=false >/dev/null 2>&1 || meson setup --reconfigure "$asan" >/dev/null
ninja -C "$asan" >/dev/null || { echo "ASan build failed"; ninja -C "$asan" | tail -20; echo "0 passed, 1 failed"; exit 1; }

export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
meson test -C "$build" --print-errorlogs --num-processes 2 "$@"
# Sanitizers slow the differential emulator tests ~10x.
meson test -C "$asan" --print-errorlogs --suite unit --suite devices --suite fuzz-regress --num-processes 2 --timeout-multiplier 10

python3 scripts/summarize-tests.py "$build/meson-logs/testlog.json" "$asan/meson-logs/testlog.json" | tee /tmp/kvmm-test-summary.$$
last=$(tail -n 1 /tmp/kvmm-test-summary.$$); rm -f /tmp/kvmm-test-summary.$$
case "$last" in *" 0 failed"*) exit 0 ;; *) exit 1 ;; esac
