#!/usr/bin/env bash
# tests/fuzz/run.sh - build the libFuzzer targets and run them.
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]     fuzz each target SECONDS (60)
#   tests/fuzz/run.sh --coverage [TARGET...]    line coverage of the corpora
#
# Targets: fuzz_boot_load fuzz_boot_split fuzz_devices fuzz_state_load
# fuzz_virtio_pci fuzz_virtqueue fuzz_virtio_blk fuzz_qcow2
# (default: all).  Environment:
#   BUILD_FUZZ   build directory (build-fuzz), configured with clang and
#                -Dfuzz=true if it does not exist yet
#   FUZZ_ARGS    extra libFuzzer flags, e.g. "-jobs=2 -workers=2"
# Corpora live in $BUILD_FUZZ/corpus/<target> (seeded from make_seeds.py,
# corpus-regress/ and any test guests in build/tests/guests); crashes,
# leaks and timeouts go to $BUILD_FUZZ/artifacts/<target>/, and each run's
# log to $BUILD_FUZZ/logs/<target>.log.  Exits non-zero if any target left
# an artifact.  To keep a crash as a regression test, minimize it
# (<target> -minimize_crash=1 -runs=10000 FILE) and copy the result to
# tests/fuzz/corpus-regress/<target>/crash-<what>.
set -euo pipefail
cd "$(dirname "$0")/../.."

build=${BUILD_FUZZ:-build-fuzz}
all_targets=(fuzz_boot_load fuzz_boot_split fuzz_devices fuzz_state_load fuzz_virtio_pci fuzz_virtqueue fuzz_virtio_blk fuzz_qcow2)
coverage=0
secs=60
if [[ ${1:-} == --coverage ]]; then
	coverage=1
	shift
elif [[ ${1:-} =~ ^[0-9]+$ ]]; then
	secs=$1
	shift
fi
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${all_targets[@]}")

if ! command -v clang >/dev/null; then
	echo "run.sh: clang not found (Debian: apt-get install clang libclang-rt-14-dev)" >&2
	exit 1
fi
if [[ ! -f $build/build.ninja ]]; then
	CC=clang meson setup "$build" -Dfuzz=true -Db_lundef=false -Dbuildtype=debugoptimized
fi
ninja -C "$build" "${targets[@]/#/tests/fuzz/}"

# Seeds: generated inputs, the regression corpus, real test guests.
seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
python3 tests/fuzz/make_seeds.py "$seeds"
for t in "${targets[@]}"; do
	mkdir -p "$build/corpus/$t"
	cp -n "$seeds/$t"/* "$build/corpus/$t/" 2>/dev/null || true
	cp -n tests/fuzz/corpus-regress/"$t"/* "$build/corpus/$t/" 2>/dev/null || true
done
for g in build/tests/guests/*.elf build/tests/guests/*.bzImage; do
	# Only when fuzz_boot_load is among the targets (its corpus exists).
	[[ -f $g && -d $build/corpus/fuzz_boot_load ]] &&
		cp -n "$g" "$build/corpus/fuzz_boot_load/guest-$(basename "$g")" || true
done

if [[ $coverage == 1 ]]; then
	# Replay every corpus through source-based coverage builds of the
	# replay programs; report the device and loader files.
	cov=${build}-cov
	if [[ ! -f $cov/build.ninja ]]; then
		CC=clang meson setup "$cov" -Dbuildtype=debug -Db_lundef=false \
			-Dc_args='-fprofile-instr-generate -fcoverage-mapping' \
			-Dc_link_args='-fprofile-instr-generate'
	fi
	ninja -C "$cov" $(printf 'tests/fuzz/%s-replay ' "${targets[@]}")
	rm -f "$cov"/prof-*.profraw
	objs=()
	for t in "${targets[@]}"; do
		LLVM_PROFILE_FILE="$cov/prof-$t.profraw" \
			"$cov/tests/fuzz/$t-replay" "$build/corpus/$t" 2>/dev/null
		objs+=(-object "$cov/tests/fuzz/$t-replay")
	done
	llvm-profdata merge -o "$cov/fuzz.profdata" "$cov"/prof-*.profraw
	llvm-cov report "${objs[@]:1}" -instr-profile="$cov/fuzz.profdata" |
		grep -E '^(Filename|src/hw/.*\.c|src/virtio/.*\.c|src/arch/x86/boot.*\.c|src/core/(state|bus|memory|timer)\.c) '
	exit 0
fi

mkdir -p "$build/logs"
status=0
for t in "${targets[@]}"; do
	case $t in
	fuzz_boot_*) max_len=32768 ;;
	*) max_len=4096 ;;
	esac
	mkdir -p "$build/artifacts/$t"
	echo "== $t: ${secs}s"
	# shellcheck disable=SC2086
	"$build/tests/fuzz/$t" "$build/corpus/$t" \
		-max_total_time="$secs" -max_len="$max_len" -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$build/artifacts/$t/" ${FUZZ_ARGS:-} \
		>"$build/logs/$t.log" 2>&1 || status=1
	grep -E '^#[0-9]+.*(DONE|pulse)|stat::number_of_executed_units|stat::average_exec_per_sec|SUMMARY|ERROR|fuzz:' \
		"$build/logs/$t.log" | tail -n 6 || true
	if compgen -G "$build/artifacts/$t/*" >/dev/null; then
		echo "!! $t left artifacts:" $build/artifacts/$t/*
		status=1
	fi
done
exit $status
