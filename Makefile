# pplaw: the two commands the README promises.
#   make quickstart   set up (idempotent) and run the main job: `pplaw run`
#   make test         set up (idempotent), then `cargo test` and `pytest`
#   make test-fast    set up, then `pytest` without the slow and gpu tests (the development loop)
# Set-up creates .venv if missing and installs the dependencies only when pyproject.toml changed
# (a stamp file), so re-running never reinstalls torch. The Rust extension is rebuilt incrementally.

VENV      ?= .venv
PY        := $(VENV)/bin/python
PIP       := $(PY) -m pip
MATURIN   := $(VENV)/bin/maturin
STAMP     := $(VENV)/.deps-stamp
PYTEST_ARGS ?=
export OMP_NUM_THREADS ?= 2
export MKL_NUM_THREADS ?= 2
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup build quickstart test test-fast test-rust test-python bench clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Dependencies (torch, transformers, ...): installed once, again only when a pyproject changes.
$(STAMP): pyproject.toml kernels/pyproject.toml | $(PY)
	$(PIP) install "maturin>=1.7,<2"
	$(PIP) install -e ./kernels
	$(PIP) install -e ".[test,polars,ray,cluster,tensorboard,bench]"
	touch $(STAMP)

# The Rust extension (pplaw._core), built in place into python/pplaw/ (incremental: seconds when unchanged).
build: $(STAMP)
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH $(MATURIN) develop --release --skip-install

setup: build

quickstart: setup
	$(VENV)/bin/pplaw run

test-rust:
	cargo test --workspace

test-python: setup
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests were collected (exit 5)"; exit 0; fi; exit $$rc

test: setup test-rust test-python

# The development loop: everything but the tests marked slow (> ~30 s each on 2 cores) or gpu; CI runs `make test`.
test-fast: setup
	$(PY) -m pytest -m "not slow and not gpu" -q $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/bench_landscape.py
	$(PY) benchmarks/bench_scoring.py
	$(PY) benchmarks/bench_fit.py

clean:
	cargo clean
	rm -rf python/pplaw/_core*.so
