# The newcomer's two commands are `make demo` and `make test`; everything else is here too.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2

.PHONY: install demo test lint format bench bench-heads bench-load benchmark-data demo-model clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/retinascreen demo

test: install
	$(BIN)/ruff check src tests bench tools
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile -q

lint: install
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools

format: install
	$(BIN)/ruff check --fix src tests bench tools
	$(BIN)/ruff format src tests bench tools

# Figures printed by bench/ scripts (never asserted by tests). Each takes minutes; heads ~1 hour.
bench: install
	$(BIN)/python bench/synth.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/quality_speed.py
	$(BIN)/python bench/inference.py

bench-heads: benchmark-data
	$(BIN)/python bench/heads.py --data data/synthetic-dr-v1

bench-load: install
	$(BIN)/python bench/load.py

benchmark-data: install
	test -f data/synthetic-dr-v1/manifest.json || \
	  $(BIN)/retinascreen synth data/synthetic-dr-v1 --benchmark synthetic-dr-v1

# Re-train the bundled demo model (configs/demo.toml, ~20 min on 2 cores) and bundle it.
demo-model: benchmark-data
	$(BIN)/python tools/make_demo_model.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache src/*.egg-info
