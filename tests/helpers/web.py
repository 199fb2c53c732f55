"""Fixtures for the web tests: a real tiny model, real photos, apps on SQLite and PostgreSQL.

Import the fixtures a test file needs by name (``from tests.helpers.web import web_app, ...``).
PostgreSQL comes from ``RETINASCREEN_TEST_POSTGRES_URL`` (default: the server .ci/services.sh
starts); each app gets its own fresh schema. Without a server the PostgreSQL cases are skipped,
unless ``CI`` is set: then they fail.
"""

from __future__ import annotations

import io
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.helpers.drawing import draw_face, draw_fundus

POSTGRES_URL = os.environ.get(
    "RETINASCREEN_TEST_POSTGRES_URL",
    "postgresql+psycopg://retinascreen:retinascreen@127.0.0.1:5432/retinascreen_test",
)
PASSWORD = "correct horse battery"


# -- images -------------------------------------------------------------------------------------
def png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def fundus_png(seed: int = 0, size: int = 96) -> bytes:
    return png(draw_fundus(size, seed=seed))


def dark_fundus_png(size: int = 96) -> bytes:
    """A fundus photo far too dark to grade (disc still visible)."""
    return png(draw_fundus(size, seed=5, gain=0.12))


def face_png(size: int = 96) -> bytes:
    return png(draw_face(size))


def png_header(width: int, height: int) -> bytes:
    """A valid, tiny PNG of width x height black pixels (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    data = b"".join(compressor.compress(row) for _ in range(16)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def bad_inputs() -> dict[str, tuple[bytes, str, int]]:
    """name -> (bytes, upload file name, expected API status) for every bad input of SPEC.md."""
    good = fundus_png(1)
    return {
        "not_an_image": (b"patient notes, not a photograph\n" * 20, "notes.jpg", 422),
        "truncated": (good[: len(good) // 2], "cut.png", 422),
        "zero_bytes": (b"", "empty.png", 422),
        "pixel_bomb": (png_header(12_000, 12_000), "bomb.png", 413),
        "unsupported": (b"GIF89a\x01\x00\x01\x00\x00\x00\x00" + b"\x00" * 30, "anim.gif", 415),
        "not_a_fundus": (face_png(), "face.png", 422),
    }


# -- model --------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def web_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained mini_xception (64 px) saved as .keras with a synthetic model card."""
    import keras

    from retinascreen.models.build import build_model
    from retinascreen.models.modelcard import ModelCard, write_card

    keras.utils.set_random_seed(0)
    model = build_model("mini_xception", "wise-srnet", size=64, widths=(8, 16))
    last = model.layers[-1]
    weights = last.get_weights()
    last.set_weights([weights[0] * 20.0, *weights[1:]])  # confident, varied grades
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    write_card(
        path,
        ModelCard(
            name="tiny-web-test",
            version="0.1",
            backbone="mini_xception",
            head="wise-srnet",
            input_size=64,
            preprocessing={"size": 64},
            synthetic=True,
        ),
    )
    return path


@pytest.fixture(scope="session")
def web_predictor(web_model_path: Path) -> Any:
    from retinascreen.serving.predictor import Predictor

    return Predictor(web_model_path)


# -- databases ----------------------------------------------------------------------------------
def postgres_schema_url() -> Iterator[str]:
    """A fresh schema on the test PostgreSQL server (dropped afterwards) as a URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(POSTGRES_URL)
    conninfo = dict(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=url.database,
        connect_timeout=3,
    )
    try:
        conn = psycopg.connect(**conninfo, autocommit=True)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is unreachable in CI: {exc}")
        pytest.skip(f"PostgreSQL unreachable ({exc.__class__.__name__}); set CI to make this fail")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        with psycopg.connect(**conninfo, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def web_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test on a SQLite file and on a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'instance' / 'retinascreen.db'}"
    else:
        yield from postgres_schema_url()


def make_app(instance: Path, web_predictor: Any, database_url: str | None = None, **config: Any):
    from retinascreen.web import create_app

    settings = {
        "INSTANCE_PATH": instance,
        "SECRET_KEY": "test-secret",
        "TESTING": True,
        "REGISTRATION": "open",
    }
    # Vessel and lesion overlays only where a test asks (tests/web/test_segmentation.py): the
    # bundled segmenters would add a 512 px network to every upload of every web test.
    settings["SEGMENTATION"] = False
    if database_url:
        settings["DATABASE_URL"] = database_url
    settings.update(config)
    return create_app(settings, predictor=web_predictor)


@pytest.fixture
def web_app(tmp_path: Path, web_predictor: Any):
    """An app on SQLite in a temporary instance folder, CSRF on as in production."""
    from retinascreen.web import dispose

    app = make_app(tmp_path / "instance", web_predictor, MAX_IMAGE_PIXELS=50_000_000)
    yield app
    dispose(app)


@pytest.fixture
def db_app(tmp_path: Path, web_predictor: Any, web_database_url: str):
    """An app on each database (SQLite and PostgreSQL)."""
    from retinascreen.web import dispose

    app = make_app(tmp_path / "instance", web_predictor, web_database_url)
    yield app
    dispose(app)


# -- browsing helpers -----------------------------------------------------------------------------
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_token(client: Any, page: str) -> str:
    response = client.get(page)
    match = CSRF_RE.search(response.get_data(as_text=True))
    assert match, f"no CSRF token on {page}"
    return match.group(1)


def post_form(client: Any, page: str, data: dict[str, Any], *, to: str | None = None, **kw: Any):
    """GET ``page`` for its CSRF token, then POST ``data`` to ``to`` (default: the same page)."""
    data = {"csrf_token": csrf_token(client, page), **data}
    return client.post(to or page, data=data, **kw)


def register(client: Any, username: str, password: str = PASSWORD, *, sign_in: bool = True):
    """Register (the answer never says whether the name was free), then sign in; returns the
    registration answer."""
    response = post_form(
        client, "/auth/register", {"username": username, "password": password, "confirm": password}
    )
    if sign_in and response.status_code == 302:
        login(client, username, password)
    return response


def login(client: Any, username: str, password: str = PASSWORD):
    return post_form(client, "/auth/login", {"username": username, "password": password})


def upload(client: Any, data: bytes, name: str = "eye.png", **fields: str):
    return post_form(
        client,
        "/screenings/new",
        {"image": (io.BytesIO(data), name), **fields},
        content_type="multipart/form-data",
    )


def api_token(client: Any, username: str, password: str = PASSWORD) -> str:
    response = client.post("/api/v1/tokens", json={"username": username, "password": password})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def api_upload(client: Any, token: str, data: bytes, name: str = "eye.png", **fields: str):
    return client.post(
        "/api/v1/screenings",
        headers=bearer(token),
        data={"image": (io.BytesIO(data), name), **fields},
        content_type="multipart/form-data",
    )


def stored_files(app: Any) -> list[str]:
    """Every file in the app's photo folder (temporary ones included)."""
    folder = Path(app.instance_path) / "photos"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []
