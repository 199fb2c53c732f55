"""Seeded mutation fuzz of :func:`retinascreen.data.images.load_image`.

Run as a script (``python tests/data/fuzz_decoder.py --cases 1500``) it prints one JSON object:
cases per outcome, the exceptions that are not :mod:`retinascreen.errors` types (with the
seed format, mutation and a reproducer index), the cases that hung past the per-case alarm,
and the peak RSS increase over the warmed-up process. tests/data/test_decoder_fuzz.py runs it
in a subprocess so that the memory figure is this decoder's alone.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import signal
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 13_000, 65_535)


def seeds() -> dict[str, bytes]:
    """Small honest files of every format the decoder reads."""
    from tests.helpers.dicom_files import deflated_dicom, dicom_bytes, encoded, rle_dicom

    rng = np.random.default_rng(7)
    rgb = np.clip(
        rng.normal(120, 40, (40, 48, 3)) + np.linspace(0, 60, 48)[None, :, None], 0, 255
    ).astype(np.uint8)
    gray = rgb[:, :, 1].copy()
    out = {
        "png": encoded(rgb, "PNG"),
        "png-gray16": _png16(gray.astype(np.uint16) * 257),
        "jpeg": encoded(rgb, "JPEG", quality=90),
        "jpeg-progressive": encoded(rgb, "JPEG", quality=80, progressive=True),
        "tiff": encoded(rgb, "TIFF"),
        "tiff-deflate": encoded(rgb, "TIFF", compression="tiff_adobe_deflate"),
        "webp": encoded(rgb, "WEBP", quality=80),
        "webp-lossless": encoded(rgb, "WEBP", lossless=True),
        "webp-animated": _animated(rgb, "WEBP"),
        "png-animated": _animated(rgb, "PNG"),
        "tiff-multipage": _animated(rgb, "TIFF"),
        "dicom": dicom_bytes(rgb),
        "dicom-gray16": dicom_bytes(gray.astype(np.uint16) * 257),
        "dicom-rle": rle_dicom(rgb),
        "dicom-deflated": deflated_dicom(rgb),
        "dicom-jpeg": dicom_bytes(
            frames=[encoded(gray, "JPEG", quality=90)],
            syntax="1.2.840.10008.1.2.4.50",
            rows=40,
            cols=48,
            samples=1,
        ),
        "dicom-j2k": dicom_bytes(
            frames=[encoded(gray, "JPEG2000", irreversible=False)],
            syntax="1.2.840.10008.1.2.4.90",
            rows=40,
            cols=48,
            samples=1,
        ),
    }
    return out


def _animated(rgb: np.ndarray, fmt: str) -> bytes:
    """Two frames (animated WebP/PNG, a two-page TIFF): only the first is ever decoded."""
    from PIL import Image

    first, second = Image.fromarray(rgb), Image.fromarray(255 - rgb)
    buffer = io.BytesIO()
    first.save(buffer, format=fmt, save_all=True, append_images=[second])
    return buffer.getvalue()


def _png16(gray16: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(gray16).save(buffer, format="PNG")
    return buffer.getvalue()


def mutate(data: bytes, rng: np.random.Generator, donors: list[bytes]) -> tuple[str, bytes]:
    """One random mutation: bit flips, insertion, deletion, chunk splice or a header field edit."""
    buf = bytearray(data)
    kind = str(rng.choice(["flip", "insert", "delete", "splice", "field", "truncate"]))
    size = len(buf)
    if kind == "flip":
        for _ in range(int(rng.integers(1, 9))):
            buf[int(rng.integers(size))] ^= 1 << int(rng.integers(8))
    elif kind == "insert":
        at = int(rng.integers(size + 1))
        buf[at:at] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    elif kind == "delete":
        at = int(rng.integers(size))
        del buf[at : at + int(rng.integers(1, 64))]
    elif kind == "splice":
        donor = donors[int(rng.integers(len(donors)))]
        start = int(rng.integers(len(donor)))
        piece = donor[start : start + int(rng.integers(4, 512))]
        at = int(rng.integers(size))
        buf[at : at + int(rng.integers(0, 256))] = piece
    elif kind == "field":
        # Header fields (sizes, lengths, counts) live in the first few hundred bytes.
        at = int(rng.integers(min(size, 400)))
        width = int(rng.choice([1, 2, 4]))
        value = int(rng.choice(INTERESTING)) & ((1 << (8 * width)) - 1)
        order = "big" if rng.random() < 0.5 else "little"
        buf[at : at + width] = value.to_bytes(width, order)
    else:
        del buf[int(rng.integers(1, size)) :]
    return kind, bytes(buf)


class _Hang(BaseException):
    """Raised by the per-case alarm (a BaseException so no decoder code swallows it)."""


def _alarm(signum: int, frame: Any) -> None:
    raise _Hang


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def run(cases: int, seed: int, max_pixels: int, alarm_s: float) -> dict[str, Any]:
    """Fuzz ``cases`` mutations spread evenly over the seeds; a summary dict."""
    from retinascreen.data.images import load_image
    from retinascreen.errors import RetinascreenError

    corpus = seeds()
    names = sorted(corpus)
    donors = list(corpus.values())
    for name in names:  # warm every code path so imports do not count as decode memory
        load_image(corpus[name], max_pixels=max_pixels)
    baseline = peak_rss_mb()
    rng = np.random.default_rng(seed)
    outcomes: Counter[str] = Counter()
    foreign: list[dict[str, Any]] = []
    hangs: list[dict[str, Any]] = []
    signal.signal(signal.SIGALRM, _alarm)
    start = time.perf_counter()
    for case in range(cases):
        name = names[case % len(names)]
        kind, data = mutate(corpus[name], rng, donors)
        signal.setitimer(signal.ITIMER_REAL, alarm_s)
        try:
            load_image(data, max_pixels=max_pixels, name=f"case{case}.{name.split('-')[0]}")
            outcomes["decoded"] += 1
        except RetinascreenError as exc:
            outcomes[type(exc).__name__] += 1
        except _Hang:
            hangs.append({"case": case, "seed": name, "mutation": kind})
        except Exception as exc:  # noqa: BLE001 - collecting what escapes is the point
            foreign.append(
                {
                    "case": case,
                    "seed": name,
                    "mutation": kind,
                    "error": f"{type(exc).__name__}: {exc}"[:300],
                    "where": traceback.format_exc().splitlines()[-3][:200],
                }
            )
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    return {
        "cases": cases,
        "seconds": round(time.perf_counter() - start, 2),
        "outcomes": dict(outcomes),
        "foreign": foreign,
        "hangs": hangs,
        "baseline_rss_mb": round(baseline, 1),
        "peak_rss_increase_mb": round(peak_rss_mb() - baseline, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-pixels", type=int, default=4_000_000)
    parser.add_argument("--alarm", type=float, default=2.0, help="seconds before a case is a hang")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.cases, args.seed, args.max_pixels, args.alarm)))


if __name__ == "__main__":
    main()
