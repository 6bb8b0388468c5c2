# cl-analysis: one command for the main job, one for the tests (see README.md).
PY := .venv/bin/python
PROFILE ?= quick
DATA_ROOT ?= $(CL_DATA_ROOT)

.PHONY: setup reproduce test test-unit test-notebooks notebooks bench gpu-check lint clean

setup:
	bash scripts/setup.sh

## reproduce: set up, then execute every notebook for PROFILE into reports/ (the main job)
reproduce: setup
	$(PY) -m cl_analysis reproduce --profile $(PROFILE) $(if $(DATA_ROOT),--data-root $(DATA_ROOT)) --out reports

## test: set up, then the unit tests and the notebooks (nbval, fast mode)
test: setup
	$(PY) -m pytest tests
	CL_FAST=1 $(PY) -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider notebooks

test-unit:
	$(PY) -m pytest tests

test-notebooks:
	CL_FAST=1 $(PY) -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider notebooks

## notebooks: regenerate each .ipynb from its reviewed .py (jupytext) without executing
notebooks:
	$(PY) -m jupytext --sync notebooks/*.py

bench: setup
	$(PY) benchmarks/bench_losses.py
	$(PY) benchmarks/bench_training.py --profiles quick paper --threads 1 2

## gpu-check: the prepared device check (CUDA: paper profile <= 8 min; CPU: smoke < 3 min) -> $(OUT)
gpu-check:
	OUT=$(or $(OUT),reports/gpu-check) PY=$(PY) bash scripts/gpu_check.sh

lint:
	$(PY) -m ruff check cl_analysis tests benchmarks

clean:
	rm -rf reports .pytest_cache
