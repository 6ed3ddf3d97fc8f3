# Inferhub: `make run` installs and starts; `make test` runs the whole suite; `make cli ARGS=...` runs the CLI.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# llama.cpp must not be built with -march=native on this hardware: the native
# build uses AMX instructions and segfaults on the first token. These flags pick
# a portable AVX2 build. pip caches the built wheel whatever CMAKE_ARGS were, so
# if a wheel was ever built without them run `make clean-llama-wheel` first.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
STAMP := $(VENV)/.installed

.PHONY: install run cli test lint bench clean clean-llama-wheel

# Each step says what it installs; pip shows its own progress (no --quiet), so a long step is visibly alive.
$(STAMP): pyproject.toml
	@echo "==> [1/4] creating the virtualenv $(VENV)"
	$(PYTHON) -m venv $(VENV)
	@echo "==> [2/4] upgrading pip, setuptools, wheel"
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	@echo "==> [3/4] installing torch 2.13.0 (CPU build, about 200 MB)"
	# torch first and pinned: an unpinned torch pulls several GB of CUDA packages.
	$(BIN)/pip install --progress-bar on torch==2.13.0
	@echo "==> [4/4] installing Inferhub and its dependencies. llama-cpp-python is compiled from source:"
	@echo "    'Building wheel for llama-cpp-python' takes about 4 minutes the first time (pip caches the"
	@echo "    wheel; later installs take seconds); a line every 30 s says it is still going."
	@( n=0; while sleep 30; do n=$$((n + 30)); echo "    ... still installing ($$n s)"; done ) & ticker=$$!; \
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install --progress-bar on -e '.[local,test]'; status=$$?; \
	kill $$ticker 2>/dev/null; exit $$status
	touch $(STAMP)
	@echo "==> installed: the CLI is $(BIN)/inferhub (or: make cli ARGS='keys list')"

install: $(STAMP)

run: install
	$(BIN)/inferhub serve

# The CLI without activating the virtualenv: make cli ARGS="keys list"
cli: install
	@$(BIN)/inferhub $(ARGS)

test: install
	bash scripts/ensure-services.sh
	bash scripts/ensure-tools.sh
	[ ! -f scripts/ensure-deploy-tools.sh ] || bash scripts/ensure-deploy-tools.sh
	[ ! -f scripts/ensure-ui-tools.sh ] || bash scripts/ensure-ui-tools.sh
	[ ! -f scripts/ensure-agent-tools.sh ] || bash scripts/ensure-agent-tools.sh
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
