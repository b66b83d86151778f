#!/usr/bin/env bash
# Run every test: the optimized build's full suite (unit, device, integration),
# the unit + device suites again under ASan+UBSan, and a bounded libFuzzer
# campaign per fuzz target (FUZZ_SECONDS each, default 30).  Ends with the line
# "N passed, N failed, N skipped"; exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."

build=${BUILD:-build}
asan=${BUILD_ASAN:-build-asan}
fuzz=${BUILD_FUZZ:-build-fuzz}

meson setup "$asan" -Dbuildtype=debug -Db_sanitize=address,undefined \
	-Db_lundef=false >/dev/null 2>&1 || meson setup --reconfigure "$asan" >/dev/null
ninja -C "$asan" >/dev/null || { echo "ASan build failed"; ninja -C "$asan" | tail -20; echo "0 passed, 1 failed"; exit 1; }

export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
meson test -C "$build" --print-errorlogs --num-processes 2 "$@"
# Sanitizers slow the differential emulator tests ~10x.
meson test -C "$asan" --print-errorlogs --suite unit --suite devices --suite fuzz-regress --num-processes 2 --timeout-multiplier 10

# libFuzzer needs clang (scripts/install-deps.sh installs it).
[ -d "$fuzz" ] || CC=clang meson setup "$fuzz" -Dfuzz=true -Db_lundef=false >/dev/null
# Only the libFuzzer binaries: the rest of the tree is built and tested above.
fuzzers=$(ninja -C "$fuzz" -t targets all | sed -n 's|^\(tests/fuzz/fuzz_[a-z0-9_]*\): c_LINKER.*|\1|p')
ninja -C "$fuzz" $fuzzers >/dev/null || { echo "fuzz build failed"; ninja -C "$fuzz" $fuzzers | tail -20; echo "0 passed, 1 failed"; exit 1; }
meson test -C "$fuzz" --no-rebuild --print-errorlogs --suite fuzz-campaign --num-processes 2

python3 scripts/summarize-tests.py "$build/meson-logs/testlog.json" "$asan/meson-logs/testlog.json" \
	"$fuzz/meson-logs/testlog.json" | tee /tmp/kvmm-test-summary.$$
last=$(tail -n 1 /tmp/kvmm-test-summary.$$); rm -f /tmp/kvmm-test-summary.$$
case "$last" in *" 0 failed"*) exit 0 ;; *) exit 1 ;; esac
