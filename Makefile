# The newcomer's two commands are `make demo` and `make test`; everything else is here too.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Exact versions with hashes (uv pip compile, universal: Linux and macOS). `make lock` refreshes it.
LOCK := requirements.lock
PYTEST_WORKERS ?= 2

.PHONY: install lock demo test lint format typecheck bench bench-heads bench-real bench-load benchmark-data demo-model clean pacs

install: $(STAMP)

# The lock holds pip, setuptools and wheel too, so the package itself is built without fetching
# anything unpinned (--no-build-isolation); nothing comes from whatever the registry serves today.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

# Re-resolve pyproject.toml's ranges to the newest releases and write them, hashed, to the lock.
# Run `make test` afterwards and commit the lock only when it passes.
lock:
	test -x $(BIN)/uv || { test -x $(BIN)/python || $(PY) -m venv $(VENV); $(BIN)/python -m pip install -q uv; }
	printf 'pip\nsetuptools>=77\nwheel\n' | $(BIN)/uv pip compile pyproject.toml - --extra dev \
	  --universal --python-version 3.11 --generate-hashes --upgrade --quiet \
	  --custom-compile-command 'make lock' -o $(LOCK)

demo: install
	$(BIN)/retinascreen demo

test: install
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools
	$(BIN)/mypy
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile -q

# A local Orthanc PACS with DICOMweb for `retinascreen pacs` (installs Debian's orthanc and
# orthanc-dicomweb if missing; needs root for that). Prints its DICOMweb URL.
pacs:
	bash .ci/orthanc.sh

lint: install
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools

typecheck: install
	$(BIN)/mypy

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

# Re-train the bundled model on the real photographs in ../shared/data/eyepacs-256
# (configs/eyepacs-lite.toml: ImageNet EfficientNet-Lite0 fine-tuned, ~1 hour on 2 cores),
# export it to ONNX (int8 when it agrees with fp32) and bundle it.
demo-model: install
	$(BIN)/python tools/make_demo_model.py

# The real-data recipe comparisons (bench/results/*-real.md; ~80 min on 2 cores).
bench-real: install
	$(BIN)/python bench/real_models.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache src/*.egg-info
