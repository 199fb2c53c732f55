"""``retinascreen demo``: the web app on the bundled demo model with a demo account, offline."""

from __future__ import annotations

import argparse
import json
import os
import threading
import urllib.request
from pathlib import Path
from typing import Any

from retinascreen.commands.serve import (
    add_server_arguments,
    check_server_arguments,
    serve_with_arguments,
)

EPILOG = """examples:
  retinascreen demo                    # open the printed URL, sign in with the printed account
  retinascreen demo --port 8080
  retinascreen demo --check            # start, grade the sample photo, fetch /readyz, exit
"""

ABOUT = """\
retinascreen grades colour fundus photographs for diabetic retinopathy on the ICDR scale
(0 No DR .. 4 Proliferative DR), flags referable disease (grade >= 2), rejects photos too poor
to grade, and shows a heat map of what drove each grade."""


def model_notice(model: str | Path | None) -> str:
    """What the served model was trained on and is for, from its model card."""
    from retinascreen.models.engines import resolve_model_path
    from retinascreen.models.modelcard import find_card
    from retinascreen.result import ModelInfo

    path = resolve_model_path(model, "auto")
    info = ModelInfo.from_card(find_card(path), path.stem)
    warning = f"\nWARNING: {info.warning}." if info.warning else ""
    return info.notice + warning


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="try the product: web app, demo model and a demo account",
        description="Start the web application on the bundled demo model with a ready demo "
        "account (its password is printed), then serve until Ctrl-C. Everything is offline.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_server_arguments(parser, workers=1)
    parser.add_argument(
        "--check",
        "--no-serve",
        dest="check",
        action="store_true",
        help="set everything up, grade the sample photo, fetch /readyz, then exit",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from retinascreen.errors import ModelError
    from retinascreen.web.accounts import ensure_demo_user
    from retinascreen.web.server import prepare

    check_server_arguments(args)
    try:
        config = prepare(args.instance, args.database_url, None)
    except ModelError as exc:
        raise ModelError(
            f"{exc}. `retinascreen demo` runs on that bundled model: reinstall retinascreen, or "
            "serve your own model with `retinascreen serve --model MODEL`"
        ) from exc
    # the demo lets visitors make their own accounts (a real server defaults to admin-only)
    config["REGISTRATION"] = os.environ.get("RETINASCREEN_REGISTRATION") or "open"
    if args.https:
        config["HTTPS"] = True
    password = ensure_demo_user(
        database_url=config["DATABASE_URL"], instance=config["INSTANCE_PATH"]
    )
    if args.check:
        return _check(config, password)
    url = f"http://{args.host}:{args.port}/"
    print(ABOUT)
    print(f"Model: {model_notice(config['MODEL'])}")
    print(
        f"\n  Open      {url}\n  Username  demo\n  Password  {password}\n"
        f"  Model     {config['MODEL']}\n  Sample    {sample_photo_path()}\n"
        f"  Data      {config['INSTANCE_PATH']}\n\n"
        "Press Ctrl-C to stop.\n",
        flush=True,
    )
    serve_with_arguments(config, args)
    return 0


def _check(config: dict[str, Any], password: str) -> int:
    """Serve in this process on a free loopback port, use it like a client, stop."""
    from werkzeug.serving import make_server

    from retinascreen.web import create_app, dispose
    from retinascreen.web.service import get_predictor

    app = create_app(dict(config))
    get_predictor(app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        health = _get_json(f"{base}/readyz")
        token = _post_json(f"{base}/api/v1/tokens", {"username": "demo", "password": password})[
            "token"
        ]
        result = _post_image(f"{base}/api/v1/screenings", token, _sample_photo())
    finally:
        server.shutdown()
        thread.join(5)
        dispose(app)
    print(ABOUT)
    print(f"Model: {model_notice(config['MODEL'])}")
    print(
        f"\ndemo check ok: /readyz {health['status']}; sample photo graded "
        f"{result['grade']} ({result['label']}), gradable={result['gradable']}, "
        f"screening id {result['id']}; account demo / {password}"
    )
    return 0


def sample_photo_path() -> Path:
    """The demo's sample photograph: scikit-image's ``retina`` (a healthy left eye, public
    domain, by Mikael Häggström), 1024 px; served at ``/static/sample-retina.jpg`` too."""
    return Path(__file__).resolve().parents[1] / "web" / "static" / "sample-retina.jpg"


def _sample_photo() -> bytes:
    return sample_photo_path().read_bytes()


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def _post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def _post_image(url: str, token: str, data: bytes) -> dict:
    boundary = "retinascreen-demo-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="demo.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        url,
        data=body,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)
