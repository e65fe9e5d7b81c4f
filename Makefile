# Switchboard: the two commands a new user types are `make demo` and `make test`.
# Both first install whatever Debian packages are missing (scripts/setup.sh).

SHELL := /bin/bash
JOBS ?= 2
NATIVE_DIR := build/native
ASAN_DIR := build/asan
FUZZ_DIR := build/fuzz
FUZZ_RUNS ?= 2000000
# ...and at most this long per target (the zstd stream target runs ~2,000/s).
FUZZ_SECONDS ?= 90
# Found with find, not git: CI tests a copy of the checkout that has no .git.
CLANG_FORMAT_FILES = $(shell find c_src native_tests -name '*.cpp' -o -name '*.hpp')

.PHONY: setup demo bench test native-test asan-test fuzz-test format-check mix-test clean

setup:
	@bash scripts/setup.sh

# The main job: the guild simulator on its embedded defaults (one guild of
# 100,000 members, 25,000 sessions, ~20 s of traffic), printing its report.
# SIM_ARGS passes options (see `mix help switchboard.sim`).
demo: setup
	MIX_ENV=prod mix compile
	MIX_ENV=prod mix switchboard.sim $(SIM_ARGS)

# The benchmark tables (quick mode: BENCH_QUICK=1).
bench: setup
	MIX_ENV=prod mix compile
	MIX_ENV=prod $(if $(BENCH_QUICK),SWITCHBOARD_BENCH_QUICK=1) mix run bench/all.exs

# Everything, in the order a failure is cheapest to see; ends with ExUnit's
# and ctest's own summary lines.
test: setup format-check native-test fuzz-test mix-test asan-test

format-check:
	mix format --check-formatted
	clang-format --dry-run --Werror $(CLANG_FORMAT_FILES)

native-test:
	cmake -S . -B $(NATIVE_DIR) -DCMAKE_BUILD_TYPE=Release -DSWITCHBOARD_BUILD_TESTS=ON \
	  -DSWITCHBOARD_NATIVE_BENCH=ON -DSWITCHBOARD_WERROR=ON
	cmake --build $(NATIVE_DIR) --parallel $(JOBS)
	ctest --test-dir $(NATIVE_DIR) --output-on-failure --parallel $(JOBS)

asan-test:
	cmake -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=Debug -DSWITCHBOARD_BUILD_TESTS=ON \
	  -DSWITCHBOARD_BUILD_NIF=OFF -DSWITCHBOARD_SANITIZE=ON -DSWITCHBOARD_WERROR=ON
	cmake --build $(ASAN_DIR) --parallel $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir $(ASAN_DIR) --output-on-failure --parallel $(JOBS)

# libFuzzer (clang), bounded: FUZZ_RUNS executions or FUZZ_SECONDS per target.
fuzz-test:
	@if [ -f native_tests/fuzz/CMakeLists.txt ]; then \
	  CC=clang CXX=clang++ cmake -S . -B $(FUZZ_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DSWITCHBOARD_FUZZ=ON -DSWITCHBOARD_SANITIZE=ON -DSWITCHBOARD_BUILD_NIF=OFF && \
	  cmake --build $(FUZZ_DIR) --parallel $(JOBS) && \
	  for target in $(FUZZ_DIR)/native_tests/fuzz/fuzz_*; do \
	    name=$$(basename $$target); corpus=native_tests/fuzz/corpus/$${name#fuzz_}; \
	    work=$(FUZZ_DIR)/corpus-$$name; mkdir -p $$work; \
	    echo "fuzzing $$name for $(FUZZ_RUNS) runs"; \
	    $$target -runs=$(FUZZ_RUNS) -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $$work $$corpus 2>&1 | tail -n 12 || exit 1; \
	  done; \
	else echo "no fuzz targets"; fi

mix-test:
	MIX_ENV=test mix compile --warnings-as-errors
	mix test --warnings-as-errors

clean:
	rm -rf build _build priv
