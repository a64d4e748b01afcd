# Makefile -- thin wrapper: the real build is CMake (build/release, build/test).
SHELL := /bin/bash
JOBS  ?= $(shell nproc)
REL   := build/release
TST   := build/test
FUZ   := build/fuzz
SP_FUZZ_SECONDS ?= 300

.PHONY: all deps build build-test run test unit integration fuzz fmt lint clean bench bench-ingest openapi

all: build

deps:
	@tools/dev/deps.sh

$(REL)/Makefile:
	cmake -S . -B $(REL) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSP_TESTS=OFF >/dev/null

build: $(REL)/Makefile
	cmake --build $(REL) -j $(JOBS)

$(TST)/Makefile:
	cmake -S . -B $(TST) -DCMAKE_BUILD_TYPE=Debug -DSP_SANITIZE=ON -DSP_FAULTS=ON >/dev/null

build-test: $(TST)/Makefile
	cmake --build $(TST) -j $(JOBS)

run: deps build
	@tools/dev/stack.sh $(REL)

test: deps build-test
	@cd $(TST) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure $(CTEST_ARGS); rc=$$?; \
	  $(MAKE) --no-print-directory -C $(CURDIR) fuzz SP_FUZZ_SECONDS=15 || rc=1; exit $$rc

# libFuzzer targets of tests/fuzz: their own clang build, each run SP_FUZZ_SECONDS seconds
# over a copy of its seed corpus (crashing inputs: $(FUZ)/tests/fuzz/run/<target>/artifacts).
fuzz:
	@CC=clang cmake -S . -B $(FUZ) -DSP_FUZZ=ON -DSP_TESTS=OFF \
	  -DSP_FUZZ_SECONDS=$(SP_FUZZ_SECONDS) >/dev/null
	cmake --build $(FUZ) --target fuzzers -j $(JOBS)
	@cd $(FUZ) && ctest --output-on-failure -j 2 -L fuzz

# The request path against a minimal CivetWeb handler in the same run (bench/run.sh), then
# ingest end to end against its PostgreSQL and JetStream ceilings (bench/ingest.sh): each
# its own release build (build/bench) and stack (other ports, build/bench/var*); not in `test`.
bench:
	@bench/run.sh
	@bench/ingest.sh

bench-ingest:
	@bench/ingest.sh

# docs/openapi.json: the document the gateway builds from its route table, the protobuf
# descriptors and docs/openapi-notes.json (make test fails while the two differ)
openapi: build
	$(REL)/gateway --openapi > docs/openapi.json.tmp && mv docs/openapi.json.tmp docs/openapi.json

unit: build-test
	@cd $(TST) && ctest --output-on-failure -L unit

integration: build-test
	@cd $(TST) && ctest --output-on-failure -L integration

fmt:
	@clang-format -i $$(git ls-files '*.c' '*.h')

lint: $(TST)/Makefile
	@clang-tidy -p $(TST) --quiet $$(git ls-files 'libs/*.c' 'services/*.c' 'tools/*.c')

clean:
	rm -rf build
