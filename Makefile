# One-command set-up. `make demo` installs everything and trains VanillaPG on CartPole-v1;
# `make test` installs everything and runs the whole test suite (CI runs exactly this).
#
# PyTorch is installed first and on its own: with no torch present, a plain `torch`
# requirement makes pip resolve the newest CUDA build (several GB). TORCH_SPEC pins the CPU
# wheel our machines carry; elsewhere use e.g.
#   make test TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu" TORCH_SPEC=torch
VENV ?= .venv
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
PYTEST_ARGS ?= -n 2 --dist loadgroup --durations=20
PY := $(VENV)/bin/python
# Two pytest workers on two cores: one math thread each, or torch oversubscribes the CPU. The tests
# that start Ray share one pytest worker (--dist loadgroup), and Ray listens on 127.0.0.1 only.
TEST_ENV := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 SDL_VIDEODRIVER=dummy MPLBACKEND=Agg RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0

.PHONY: install demo test test-fast lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[zoo,bench,test,dev,distributed]"
	touch $@

demo: install
	$(PY) examples/vpg_cartpole.py

test: install
	$(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS)

test-fast: install
	$(TEST_ENV) $(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check sb3_pgx tests examples benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
