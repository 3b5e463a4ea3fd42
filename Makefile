# Two commands get a newcomer going: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: venv demo test test-fast clean

venv: $(STAMP)

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

$(TEST_STAMP): $(STAMP) requirements-test.txt
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $(TEST_STAMP)

demo: $(STAMP)
	$(PY) run.py demo --out runs/demo

test: $(TEST_STAMP)
	$(PY) -m pytest -q

# the tests that start no other process (no loader workers, torchrun jobs or subprocesses): a quick check
test-fast: $(TEST_STAMP)
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf runs .pytest_cache
