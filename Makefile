# Two commands do all setup on a fresh machine:
#   make demo   a full purchase between Things on this machine (DEMO_ARGS="--workdir DIR --trace FILE.svg")
#   make test   the whole test suite, under CPython and MicroPython
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench venv clean

demo: $(STAMP)
	$(PY) tools/demo.py $(DEMO_ARGS)

test: $(STAMP)
	PYTHONPATH=tools $(PY) -m harness.broker --install
	$(PY) -m pytest host_tests $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) tools/bench.py --json bench.json $(BENCH_ARGS)

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check --quiet -r requirements.txt
	$(VENV)/bin/pip install --disable-pip-version-check --quiet --no-build-isolation --no-deps -e .
	touch $(STAMP)

clean:
	rm -rf $(VENV) firmware/build .pytest_cache .hypothesis
