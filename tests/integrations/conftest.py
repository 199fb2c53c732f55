"""Fixtures shared by the intake tests (watch folder, PACS)."""

from __future__ import annotations

import pytest

from tests.helpers.live_server import PASSWORD, USERNAME


@pytest.fixture
def sink(tmp_path, web_predictor):
    """A ScreeningSink owned by a fresh admin account in its own instance folder."""
    from retinascreen.web.accounts import create_admin
    from retinascreen.web.intake import ScreeningSink

    create_admin(USERNAME, PASSWORD, instance=tmp_path / "instance")
    sink = ScreeningSink(USERNAME, instance=tmp_path / "instance", predictor=web_predictor)
    yield sink
    sink.close()
