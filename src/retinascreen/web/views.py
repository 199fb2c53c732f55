"""The home page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

bp = Blueprint("main", __name__)


@bp.get("/")
def home() -> Any:
    return render_template("home.html")
