# The first two targets are the README's first two commands.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench install clean

run: $(STAMP)
	@echo "examples/config.hcl sets no api_token: the API on 127.0.0.1:8558 is open to every local user"
	$(VENV)/bin/reconciler start -config-file=examples/config.hcl

test: $(STAMP)
	$(PY) -m pytest --cov --cov-report=term

lint: $(STAMP)
	$(VENV)/bin/ruff check reconciler tests bench
	$(VENV)/bin/ruff format --check reconciler tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(PY) -m bench

# As root: the service, its user, a default configuration (see systemd/install.sh).
# ROOT=dir installs under dir instead (packaging); PREFIX is where the venv goes.
PREFIX ?= /opt/reconciler
ROOT   ?=
install:
	ROOT="$(ROOT)" PREFIX="$(PREFIX)" PYTHON="$(PYTHON)" bash systemd/install.sh

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) sync-tasks .pytest_cache .mypy_cache .ruff_cache
