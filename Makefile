# Self-sufficient targets for a fresh machine: each creates .venv if missing, installs
# torch 2.13.0 (CPU build) first, then somprobe with the tested pins, then does its job.
# Re-running is quick: the install step is skipped while pyproject.toml and
# constraints.txt are unchanged.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.somprobe-installed
EXTRAS := dev,backends,finetune,notebooks

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export MPLBACKEND := Agg
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install demo test lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python experiments/attn_alignment.py

lint: install
	$(BIN)/ruff check somprobe tests experiments benchmarks notebooks
	$(BIN)/ruff format --check somprobe tests experiments benchmarks notebooks

typecheck: install
	$(BIN)/mypy somprobe
	$(BIN)/mypy experiments

pytest: install
	$(BIN)/pytest -q -n 2 --dist loadfile

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
