# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[test,ray]'
	touch $(STAMP)

venv: $(STAMP)

## Grade the bundled reference and calibration submissions and print the scores.
demo: $(STAMP)
	$(PY) -m grader demo

## Run the project's tests (real sandboxes, real pytest runs).
test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) demo-out
