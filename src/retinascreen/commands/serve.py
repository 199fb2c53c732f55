"""``retinascreen serve``: the web application under gunicorn (several workers)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

EPILOG = """examples:
  retinascreen serve                                   # demo model, SQLite in ./instance
  retinascreen serve --model runs/xception --port 8000 --workers 4
  retinascreen serve --database-url postgresql://user:pw@db/retinascreen
then open http://127.0.0.1:5000/ (create the first account with `retinascreen admin create`).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve the web application and REST API",
        description=(
            "Serve the web application and REST API with gunicorn. The database schema is "
            "migrated first; each worker loads the model once. DATABASE_URL (or --database-url) "
            "selects PostgreSQL; the default is SQLite in the instance folder."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_server_arguments(parser)
    parser.add_argument(
        "--model", metavar="MODEL", help=".keras, .onnx or run directory (default: demo model)"
    )
    parser.set_defaults(func=run)


def add_server_arguments(
    parser: argparse.ArgumentParser, *, port: int = 5000, workers: int = 2
) -> None:
    """Options shared by ``serve`` and ``demo``."""
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=port, help=f"port (default {port})")
    parser.add_argument(
        "--database-url", metavar="URL", help="SQLAlchemy URL (default: $DATABASE_URL or SQLite)"
    )
    parser.add_argument(
        "--instance",
        type=Path,
        metavar="DIR",
        help="folder for the SQLite database, photos and secret key (default ./instance)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=workers,
        metavar="N",
        help=f"worker processes, each with its own copy of the model (default {workers})",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=16,
        metavar="T",
        help="threads per worker (default 16; slow clients each hold one)",
    )
    parser.add_argument(
        "--body-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds a request body may take to arrive, then 408 (default 30; 0 = no limit)",
    )
    parser.add_argument(
        "--https",
        action="store_true",
        help="served to users over HTTPS (TLS at a proxy): Secure cookies and HSTS "
        "(same as RETINASCREEN_HTTPS=1; see docs/security.md)",
    )


def check_server_arguments(args: argparse.Namespace) -> None:
    """ConfigError for server options out of range (before anything is set up)."""
    from retinascreen.errors import ConfigError

    if args.workers < 1 or args.threads < 1 or not 0 <= args.port <= 65535:
        raise ConfigError("--workers and --threads must be at least 1 and --port 0..65535")
    if args.body_timeout < 0:
        raise ConfigError("--body-timeout must be 0 (no limit) or more seconds")


def serve_with_arguments(config: dict[str, Any], args: argparse.Namespace) -> None:
    """Serve ``config`` with the options :func:`add_server_arguments` added, until Ctrl-C."""
    from retinascreen.web.server import serve

    serve(
        config,
        host=args.host,
        port=args.port,
        workers=args.workers,
        threads=args.threads,
        body_timeout=args.body_timeout,
    )


def run(args: argparse.Namespace) -> int:
    from retinascreen.web.server import prepare

    check_server_arguments(args)
    config = prepare(args.instance, args.database_url, args.model)
    if args.https:
        config["HTTPS"] = True
    print(
        f"retinascreen: serving {config['MODEL']} on http://{args.host}:{args.port}/ "
        f"({args.workers} workers); Ctrl-C stops",
        flush=True,
    )
    serve_with_arguments(config, args)
    return 0
