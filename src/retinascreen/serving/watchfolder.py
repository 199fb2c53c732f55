"""A camera's export folder, watched: each photo is handed on once the camera has finished it.

:class:`FolderWatcher` finds photos already in the folder at start, then follows ``watchdog``
events. A file is *complete* when its size and modification time have not changed for
``settle`` seconds; one that still fails to decode as truncated is retried until it has been
quiet for ``grace`` seconds (a camera that pauses mid-write). Hidden files and the temporary
names cameras and copy tools write first (``.part``, ``.tmp``, ``~``) are ignored until renamed.

:func:`identify` says whose photo it is, which eye and which day: from the DICOM header where
there is one, else from the naming rule ``<patient>_<eye>[_anything].<ext>`` (eye ``left`` /
``right`` / ``L`` / ``R`` / ``OD`` / ``OS``, e.g. EyePACS's ``10_left.jpeg``), else from the
sub-folder the photo is in (``<folder>/<patient>/<photo>``); the day is the header's date, else
the file's modification day. A patient's photos of one day form one visit.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from retinascreen.data.images import SUPPORTED_SUFFIXES
from retinascreen.errors import TruncatedImageError

log = logging.getLogger(__name__)

_EYE_WORDS = {
    "left": "left",
    "l": "left",
    "os": "left",
    "right": "right",
    "r": "right",
    "od": "right",
}
_NAME_RULE = re.compile(
    r"^(?P<patient>.+?)[_\-. ](?P<eye>left|right|l|r|od|os)(?:[_\-. ].*)?$", re.I
)
_TEMPORARY = (".part", ".tmp", ".partial", ".crdownload", "~")


@dataclass(frozen=True)
class Identity:
    """Whose photo, which eye, which day, which field (each None when nothing says)."""

    patient_id: str | None
    eye: str | None
    day: date | None
    field: str | None = None  # the DICOM header's photographed field, as it says it


def identify(path: Path, root: Path, data: bytes) -> Identity:
    """The patient, eye and day of a photo: DICOM header, else naming rule, else its folder."""
    from retinascreen.data.dicom_headers import is_dicom, read_headers

    patient = eye = field = None
    day = None
    if is_dicom(data):
        try:
            headers = read_headers(data, path.name)
            patient, eye, day = headers.patient_id, headers.eye, headers.date
            field = headers.photo_field
        except Exception:  # noqa: BLE001 - an unreadable header: the decoder will say why
            pass
    match = _NAME_RULE.match(path.stem)
    if match:
        patient = patient or match["patient"].strip() or None
        eye = eye or _EYE_WORDS[match["eye"].lower()]
    if patient is None and path.parent != root:
        patient = path.parent.name
    if day is None:
        try:
            day = datetime.fromtimestamp(path.stat().st_mtime).date()
        except OSError:
            day = None
    return Identity(patient[:64] if patient else None, eye, day, field)


def sha256_of(data: bytes) -> str:
    """Hex SHA-256 of a file's bytes (the key that keeps a photo from being screened twice)."""
    return hashlib.sha256(data).hexdigest()


def is_candidate(path: Path) -> bool:
    """Whether ``path`` looks like a finished photo (supported suffix, not hidden or temporary)."""
    name = path.name
    if name.startswith(".") or name.lower().endswith(_TEMPORARY):
        return False
    return path.suffix.lower() in SUPPORTED_SUFFIXES


@dataclass
class _Pending:
    signature: tuple[int, int]
    quiet_since: float


class FolderWatcher:
    """Hands each complete photo under ``folder`` to ``handle(path)``, one at a time.

    ``handle`` raising :class:`TruncatedImageError` means "not finished yet": the file is tried
    again after it changes, or given up on (logged) once it has been quiet for ``grace``
    seconds. Other exceptions are logged and the file is left for the next start.
    """

    def __init__(
        self,
        folder: Path,
        handle: Callable[[Path], None],
        *,
        settle: float = 2.0,
        grace: float = 60.0,
        poll: float = 0.25,
    ) -> None:
        self.folder = Path(folder).resolve()
        if not self.folder.is_dir():
            from retinascreen.errors import ConfigError

            raise ConfigError(f"{folder}: no such folder to watch")
        self.handle = handle
        self.settle, self.grace, self.poll = settle, grace, poll
        self._pending: dict[Path, _Pending] = {}
        self._lock = threading.Lock()
        self._done: set[tuple[Path, tuple[int, int]]] = set()

    def notice(self, path: Path) -> None:
        """Queue ``path`` (called for every watchdog event and for the start-up scan)."""
        path = Path(path)
        if is_candidate(path):
            with self._lock:
                self._pending.setdefault(path, _Pending((-1, -1), time.monotonic()))

    def scan(self) -> None:
        """Queue every photo already in the folder (what arrived while nobody watched)."""
        for path in sorted(self.folder.rglob("*")):
            if path.is_file():
                self.notice(path)

    def step(self) -> int:
        """Hand on every queued file that has been quiet for ``settle`` s; returns how many."""
        now = time.monotonic()
        with self._lock:
            queued = list(self._pending.items())
        handed = 0
        for path, pending in queued:
            try:
                stat = path.stat()
            except FileNotFoundError:
                self._forget(path)
                continue
            signature = (stat.st_size, stat.st_mtime_ns)
            if signature != pending.signature:
                pending.signature, pending.quiet_since = signature, now
                continue
            if now - pending.quiet_since < self.settle or stat.st_size == 0:
                continue
            if (path, signature) in self._done:
                self._forget(path)
                continue
            try:
                self.handle(path)
            except TruncatedImageError as exc:
                if now - pending.quiet_since < self.grace:
                    continue  # still being written, slowly: try again when it changes or later
                log.warning("%s: gave up waiting for the file to be complete (%s)", path, exc)
            except Exception:  # noqa: BLE001 - one bad file must not stop the watch
                log.exception("%s: could not be taken in; it is left for the next start", path)
            self._done.add((path, signature))
            self._forget(path)
            handed += 1
        return handed

    def pending(self) -> int:
        """How many files wait to be complete."""
        with self._lock:
            return len(self._pending)

    def _forget(self, path: Path) -> None:
        with self._lock:
            self._pending.pop(path, None)

    def run(self, stop: threading.Event | None = None, *, once: bool = False) -> None:
        """Scan, then follow the folder until ``stop`` is set (``once``: until the scan is done)."""
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        watcher = self

        class _Events(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.is_directory:
                    return
                target = getattr(event, "dest_path", "") or event.src_path
                watcher.notice(Path(str(target)))

        stop = stop or threading.Event()
        observer = Observer()
        observer.schedule(_Events(), str(self.folder), recursive=True)
        observer.start()
        try:
            self.scan()
            while not stop.is_set():
                self.step()
                if once and not self.pending():
                    break
                stop.wait(self.poll)
        finally:
            observer.stop()
            observer.join(timeout=5)
