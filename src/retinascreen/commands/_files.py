"""Shared loop for commands that take many image files: one bad file never stops the rest."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from tqdm import tqdm

from retinascreen.data.folders import find_images
from retinascreen.errors import RetinascreenError


def expand_images(arguments: Iterable[str]) -> list[Path]:
    """The given files, with each folder replaced by the supported images inside it (sorted,
    hidden files skipped: :func:`retinascreen.data.folders.find_images`)."""
    paths: list[Path] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            paths.extend(find_images(path))
        else:
            paths.append(path)
    return paths


def for_each_image(paths: list[Path], work: Callable[[Path], None], *, what: str) -> int:
    """Run ``work`` on every path; print ``error: ...`` lines for bad files; return exit status.

    Returns 0 when every file worked, 2 when any failed (the others are still processed).
    """
    failures = 0
    for path in _progress(paths, what):
        try:
            work(path)
        except RetinascreenError as exc:
            failures += 1
            tqdm.write(f"error: {exc}", file=sys.stderr)
        except OSError as exc:
            failures += 1
            tqdm.write(f"error: {path}: {exc.strerror or exc}", file=sys.stderr)
    return 2 if failures else 0


def _progress(paths: list[Path], what: str) -> Iterator[Path]:
    # A bar only when the work is long enough to wait for and stderr is a terminal.
    yield from tqdm(
        paths,
        desc=what,
        unit="image",
        file=sys.stderr,
        disable=True if len(paths) < 20 else None,
        leave=False,
    )
