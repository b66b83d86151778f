# Thin wrapper for the two README commands; meson + ninja do the work.
BUILD ?= build

.PHONY: all setup build run check bench clean

all: build

setup:
	scripts/install-deps.sh

build:
	@[ -f $(BUILD)/build.ninja ] || meson setup $(BUILD)
	ninja -C $(BUILD)

# Install, build, and boot the default guest.
run: setup build
	scripts/run-default-guest.sh

# Install, build, and run every test; ends with "N passed, N failed, N skipped".
check: setup build
	BUILD=$(BUILD) scripts/check.sh

bench: setup build
	bench/boot.sh

clean:
	rm -rf $(BUILD) build-asan build-fuzz build-fuzz-cov
