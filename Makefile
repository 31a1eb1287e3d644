# Two commands on a fresh machine: `make demo` (the main job on the built-in simulator) and
# `make test`. Both create .venv and install what they need the first time.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,predict,sweep]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/slosched run

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV)
