# Two commands set everything up on a fresh machine with python3, pip and make:
#   make demo   the whole flow on the embedded sandbox
#   make test   the test suite with coverage
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --config-settings editable_mode=compat -e .
	$(BIN)/python -m compileall -q helpctl >/dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/helpctl demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider --cov --cov-report=term --cov-fail-under=85

bench: $(STAMP)
	$(BIN)/python bench/startup.py

clean:
	rm -rf $(VENV) .coverage .coverage.* htmlcov
