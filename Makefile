# Two entry points for a fresh machine; each sets up what it needs by itself.
#   make verify   proofs + conformance of the bundled default target, report in ./report
#   make test     the whole test suite
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: verify test setup clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

verify: $(STAMP)
	$(VENV)/bin/pvspec verify --report report

test: $(STAMP)
	$(VENV)/bin/python -m pytest -n 2 -q

clean:
	rm -rf $(VENV) report
