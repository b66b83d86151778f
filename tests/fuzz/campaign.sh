#!/usr/bin/env bash
# tests/fuzz/campaign.sh - one bounded libFuzzer run, as a meson test (suite
# fuzz-campaign in a -Dfuzz=true build; scripts/check.sh runs it in CI).
#
#   campaign.sh FUZZER SEEDS_DIR WORK_DIR [SECONDS]
#
# Fuzzes for SECONDS (default $FUZZ_SECONDS, else 30) starting from a copy
# of the seed corpus (the regression inputs), so the repository is never
# written.  Fails, with the crash input's path and libFuzzer's report, if
# the target crashed, leaked, hit a sanitizer or timed out on an input.
set -uo pipefail
fuzzer=$1 seeds=$2 work=$3 secs=${4:-${FUZZ_SECONDS:-30}}
name=$(basename "$fuzzer")
rm -rf "$work" && mkdir -p "$work/corpus" "$work/artifacts"
cp -r "$seeds"/. "$work/corpus/" 2>/dev/null || true
# -close_fd_mask=2: the targets' own stderr (kvmm's log lines, img check's
# report per input) would fill the log; libFuzzer's and the sanitizers'
# reports still reach it.  Rerun an artifact by hand to see its messages.
"$fuzzer" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	-close_fd_mask=2 -artifact_prefix="$work/artifacts/" "$work/corpus" >"$work/log" 2>&1
status=$?
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log")
if [ "$status" -ne 0 ] || [ -n "$(ls -A "$work/artifacts")" ]; then
	echo "FAIL: $name: libFuzzer exit status $status; inputs in $work/artifacts/"
	grep -E "ERROR|SUMMARY|Test unit written" "$work/log" | head -20
	exit 1
fi
echo "PASS: $name: ${execs:-?} executions in ${secs} s, no crash"
