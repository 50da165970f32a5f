# Two commands on a fresh machine:  `make run`  (the default pipeline)  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
SNAKEMAKE := $(VENV)/bin/snakemake
CORES ?= all

.PHONY: setup run report test test-fast lint bench docs clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	# the CPU build of torch first: an unpinned torch would pull several GB of CUDA packages
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,slurm]"
	touch $@

setup: $(VENV)/.installed

run: setup  ## train, evaluate and report on the embedded synthetic data set
	$(SNAKEMAKE) --cores $(CORES) --workflow-profile profiles/local
	$(SNAKEMAKE) --report report.html
	@echo "open report.html in a browser"

test: setup  ## the whole test suite (slurm tests run when a cluster answers; see tests/slurm/cluster.sh)
	$(VENV)/bin/pytest -q

test-fast: setup  ## unit tests only
	$(VENV)/bin/pytest -q -m "not slow and not slurm"

lint: setup  ## what CI checks before the tests: lint and format of the Python and Snakemake code
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/snakefmt --check Snakefile workflow/rules
	$(SNAKEMAKE) --lint

bench: setup
	$(PY) bench/train_one.py

docs: setup  ## regenerate docs/configuration.md (from the schema) and docs/performance.md (from docs/benchmarks/)
	$(PY) -m errorless config-docs --write docs/configuration.md
	$(PY) bench/assemble.py

clean:
	rm -rf results logs benchmarks .snakemake report.html
