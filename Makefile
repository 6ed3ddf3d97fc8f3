# Inferhub: `make run` installs and starts; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# llama.cpp must not be built with -march=native on this hardware: the native
# build uses AMX instructions and segfaults on the first token. These flags pick
# a portable AVX2 build. pip caches the built wheel whatever CMAKE_ARGS were, so
# if a wheel was ever built without them run `make clean-llama-wheel` first.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench clean clean-llama-wheel

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	# torch first and pinned: an unpinned torch pulls several GB of CUDA packages.
	$(BIN)/pip install --quiet torch==2.13.0
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install --quiet -e '.[local,test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/inferhub serve

test: install
	bash scripts/ensure-services.sh
	bash scripts/ensure-tools.sh
	[ ! -f scripts/ensure-deploy-tools.sh ] || bash scripts/ensure-deploy-tools.sh
	[ ! -f scripts/ensure-ui-tools.sh ] || bash scripts/ensure-ui-tools.sh
	bash bench/ensure-bench-tools.sh
	$(BIN)/ruff check src tests bench
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

# Benchmarks (docs/performance.md): nginx as the static upstream, wrk, py-spy; results in bench/results/.
# BENCH_ARGS=--quick for a 5-minute pass, BENCH_ARGS="--ref HEAD" to leave a dirty tree out;
# `python -m bench.harness --help` for single scenarios.
bench: install
	bash bench/ensure-bench-tools.sh
	bash scripts/ensure-services.sh
	$(BIN)/python -m bench.harness all $(BENCH_ARGS)

clean-llama-wheel:
	-$(BIN)/pip cache remove 'llama_cpp_python*'
	-pip cache remove 'llama_cpp_python*'

clean:
	rm -rf $(VENV) .inferhub .pytest_cache
