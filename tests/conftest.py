"""Shared test fixtures. Tests use real files, tiny models and no network."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

# The web tests' fixtures (web_predictor, web_app, db_app, ...), available to every test module.
pytest_plugins = ["tests.helpers.web", "tests.helpers.segmentation"]
