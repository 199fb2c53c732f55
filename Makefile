# The newcomer's two commands are `make demo` and `make test`; everything else is here too.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2

.PHONY: install demo test lint format bench benchmark-data clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/retinascreen demo

test: install
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile -q

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: install
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

bench: install
	$(BIN)/python bench/synth.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/inference.py

benchmark-data: install
	$(BIN)/retinascreen synth data/synthetic-dr-v1 --benchmark synthetic-dr-v1

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache src/*.egg-info
