# One set-up path for a fresh machine. torch==2.13.0 is installed FIRST so pip never
# resolves a CUDA build of torch from the registry.  Ray (the [ray] extra, ~240 MB, no torch) is
# installed too: the study tests run `classaware compare --executor ray` on a local Ray head.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup data demo test lint bench

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

setup: $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,ray]"

# Debian's Fashion-MNIST (IDX files in /usr/share/datasets/fashion-mnist) and chromium (report test).
data:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] || ! command -v chromium >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist chromium >/dev/null; fi

demo: setup data
	$(BIN)/classaware

test: setup data
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

lint:
	$(BIN)/ruff check src tests benchmarks
