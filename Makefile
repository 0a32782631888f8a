# Two commands for a newcomer: `make demo` and `make test`. Each builds .venv from
# nothing when it is missing or stale, installs everything pinned, registers the
# Jupyter kernel, then runs.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
KERNEL := hospital-workbench
# Flower phones home and checks for updates unless told not to; the sites have no internet.
export FLWR_TELEMETRY_ENABLED := 0
export FLWR_DISABLE_UPDATE_CHECK := 1

.PHONY: venv demo lint test test-fast lab bench wheelhouse clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e ".[notebook,dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Hospital DP workbench (Python 3.11)" >/dev/null
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/workbench demo --out out/demo

# ruff: the linter (E, F, I, B, UP) and the formatter, configured in pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Two workers, one test file each at a time (a file's tests share its fixtures): most slow
# tests wait on real processes (Flower, Jupyter kernels), so two at once use both cores.
test: lint
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder --durations=30

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "not slow"

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

# Every pinned wheel, the project's own included, in one folder, for a machine without a
# package index: pip install --no-index --find-links wheelhouse hospital-dp-workbench
# (federation/site/OPERATIONS.md). torch is the CPU build the constraints pin; from
# pypi.org add PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu to get it.
WHEELHOUSE ?= wheelhouse
wheelhouse: $(STAMP)
	rm -rf $(WHEELHOUSE)
	$(BIN)/python -m pip wheel --quiet --wheel-dir $(WHEELHOUSE) -c requirements/constraints.txt .
	@echo "$(WHEELHOUSE)/: $$(ls $(WHEELHOUSE) | wc -l) wheels; install offline with: pip install --no-index --find-links $(WHEELHOUSE) hospital-dp-workbench"

clean:
	rm -rf $(VENV) out .pytest_cache
