# Two entry points for a fresh machine; each sets up what it needs by itself.
#   make verify   proofs + conformance of the bundled default target, report in ./report
#   make test     the whole test suite
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: verify test setup system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Debian packages for the vhost-user targets (QEMU's qemu-storage-daemon, virtiofsd).
# Installed when running as root (CI); otherwise those tests skip with the reason.
system-deps:
	@if [ "$$(id -u)" = 0 ]; then scripts/install-system-deps; \
	else echo "system-deps: not root, QEMU backends not installed (vhost-user tests skip)"; fi

verify: $(STAMP) system-deps
	$(VENV)/bin/pvspec verify --report report --force

test: $(STAMP) system-deps
	$(VENV)/bin/python -m pytest -n 2 -q

clean:
	rm -rf $(VENV) report
