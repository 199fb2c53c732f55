"""``retinascreen watch FOLDER``: screen photos as the camera writes them into a folder."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

EPILOG = """examples:
  retinascreen admin create screener                 # once: the account that owns the results
  retinascreen watch /srv/camera-export --user screener
  retinascreen watch /srv/camera-export --user screener --once   # what is there, then exit
Results land in the web app's database (same --instance / --database-url as `serve`).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "watch",
        help="screen photos as a camera writes them into a folder",
        description=(
            "Watch FOLDER (and its sub-folders) and screen each photo once it is complete, into "
            "the web app's database, owned by --user. A photo is never screened twice (its "
            "content hash is recorded with its screening in one transaction), so a restart "
            "neither loses nor repeats work. Patient, eye and day come from the DICOM header, "
            "else from names like <patient>_<left|right|L|R|OD|OS>.jpg, else from a "
            "<patient>/ sub-folder; a patient's photos of one day form one visit."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("folder", type=Path, metavar="FOLDER", help="the camera's export folder")
    add_intake_arguments(parser)
    parser.add_argument(
        "--settle",
        type=float,
        default=2.0,
        metavar="S",
        help="seconds a file must stay unchanged before it is read (default 2)",
    )
    parser.add_argument(
        "--once", action="store_true", help="screen what is in the folder now, then exit"
    )
    parser.set_defaults(func=run)


def add_intake_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``watch`` and ``pacs``: the owner account, the database, the model."""
    parser.add_argument(
        "--user", required=True, metavar="NAME", help="account that owns the screenings"
    )
    parser.add_argument(
        "--database-url", metavar="URL", help="SQLAlchemy URL (default: $DATABASE_URL or SQLite)"
    )
    parser.add_argument(
        "--instance",
        type=Path,
        metavar="DIR",
        help="the web app's instance folder (default ./instance)",
    )
    parser.add_argument(
        "--model", metavar="MODEL", help=".keras, .onnx or run directory (default: demo model)"
    )


def run(args: argparse.Namespace) -> int:
    from retinascreen.errors import ConfigError
    from retinascreen.serving.watchfolder import FolderWatcher, identify, sha256_of
    from retinascreen.web.intake import Photo, ScreeningSink

    if args.settle < 0:
        raise ConfigError("--settle must be 0 or more seconds")
    if not Path(args.folder).is_dir():
        raise ConfigError(f"{args.folder}: no such folder to watch")
    sink = ScreeningSink(
        args.user, instance=args.instance, database_url=args.database_url, model=args.model
    )
    root = Path(args.folder).resolve()

    def handle(path: Path) -> None:
        data = path.read_bytes()
        digest = sha256_of(data)
        if sink.seen("watch", digest) is not None:
            return  # this content was screened before (under any name)
        who = identify(path, root, data)
        row = sink.store(
            Photo(
                data=data,
                name=str(path.relative_to(root)),
                source="watch",
                key=digest,
                sha256=digest,
                patient_id=who.patient_id,
                eye=who.eye,
                visit_date=who.day,
                field=who.field,
            )
        )
        what = f"screening {row.screening_id}" if row.state == "screened" else row.error
        print(
            f"{path.relative_to(root)}: visit {row.visit} {row.eye or '?'} eye: {what}", flush=True
        )

    watcher = FolderWatcher(root, handle, settle=args.settle)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    if not args.once:
        print(
            f"retinascreen: watching {root} for photos; Ctrl-C stops", file=sys.stderr, flush=True
        )
    try:
        watcher.run(stop, once=args.once)
    finally:
        sink.close()
    return 0
