# Thin wrapper over CMake: the two commands of the README and a few helpers.
# `make run` and `make test` install what is missing first (scripts/install-deps.sh).

BUILD      ?= build
TEST_BUILD ?= build-test
CONFIG     ?= conf/cloro-proxy.conf
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps build run test demo bench bench-cache bench-limits bench-artifacts bench-async bench-saver bench-soak format format-check clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCLORO_TESTS=ON >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# Starts the proxy on 127.0.0.1:8787 with the example configuration; the
# cache lives under ./var. Set CLORO_API_KEY to hold the team's key.
run: build
	@mkdir -p var
	exec $(BUILD)/proxy/cloro-proxy serve --config $(CONFIG)

# Sanitizer build (ASan + UBSan), warnings as errors, every test under ctest.
test: deps
	@cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCLORO_SANITIZE=ON \
		-DCLORO_WERROR=ON >/dev/null
	@cmake --build $(TEST_BUILD) -j $(JOBS)
	ctest --test-dir $(TEST_BUILD) --output-on-failure -j $(JOBS) --timeout 300

# The fake cloro upstream and the proxy together, with curl lines to try.
demo: build
	@scripts/demo.sh $(BUILD)

# libFuzzer targets (tests/fuzz), built with clang in build-fuzz: each runs
# FUZZ_SECONDS (default 60); FUZZ_TARGETS picks some. Crashes land in
# build-fuzz/artifacts/. A short smoke run of each is part of `make test`.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
.PHONY: fuzz
fuzz: deps
	FUZZ_BUILD=$(CURDIR)/build-fuzz FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run.sh fuzz $(FUZZ_TARGETS)

# The benchmarks (bench/): deps (wrk, nginx-light), a Release build in
# $(BUILD), then the target's script. `make bench-soak` runs the soak for
# SOAK_SECONDS (default 60; an hour: SOAK_SECONDS=3600 make bench-soak).
bench:           BENCH_SCRIPT = passthrough
bench-cache:     BENCH_SCRIPT = cache_hit
bench-limits:    BENCH_SCRIPT = limits
bench-artifacts: BENCH_SCRIPT = artifacts
bench-async:     BENCH_SCRIPT = async_batch
bench-saver:     BENCH_SCRIPT = credit_saver
bench-soak:      BENCH_SCRIPT = soak
bench bench-cache bench-limits bench-artifacts bench-async bench-saver bench-soak:
	@WITH_BENCH=1 scripts/install-deps.sh
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	bench/$(BENCH_SCRIPT).sh $(BUILD)

format:
	@scripts/format.sh

format-check:
	@scripts/format.sh --check

clean:
	rm -rf $(BUILD) $(TEST_BUILD)
