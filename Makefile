# Every target sets up its own .venv (created, or refreshed when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)

.PHONY: demo test test-fast compile bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "safetax needs Python >= 3.11"'
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	# The CPU build of torch, pinned first so nothing pulls a CUDA build.
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -e ".[test]"
	touch $@

demo: $(STAMP)  ## run the alignment pipeline locally on the tiny demo model
	$(VENV)/bin/safetax demo $(ARGS)

test: $(STAMP)  ## all tests, end-to-end ones included
	$(VENV)/bin/python -m pytest $(ARGS)

test-fast: $(STAMP)  ## unit tests only
	$(VENV)/bin/python -m pytest -m "not e2e" $(ARGS)

compile: $(STAMP)  ## recompile the golden pipeline YAML
	$(VENV)/bin/safetax compile --out pipelines/compiled

bench: $(STAMP)  ## benchmarks that print ratios
	for b in bench/bench_*.py; do $(VENV)/bin/python $$b || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache
