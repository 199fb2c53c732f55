"""Peak RSS increase of one decode, and of 4 decodes in parallel threads, per hostile input.

Inputs: a DICOM saying 10x10 that carries a 13,000^2 JPEG, a 7,000^2 PNG, a 7,000^2
JPEG-in-DICOM, and a Deflated DICOM that inflates to 512 MiB. Each measurement runs in a fresh
process (ru_maxrss is a per-process peak) under a 6 GiB address-space limit, so a runaway
decode fails there instead of taking the machine down.

    python bench/decode_memory.py                       # this checkout's src/
    git archive main src | tar -x -C /tmp/before        # the code before, for comparison
    python bench/decode_memory.py --src /tmp/before/src
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.dicom_files import (  # noqa: E402
    deflate_bomb_dicom,
    dicom_bytes,
    encoded,
    jpeg_bomb_dicom,
)

ADDRESS_SPACE_LIMIT = 6 << 30


def _photo(side: int) -> np.ndarray:
    """A smooth colour gradient (compresses well, decodes to side^2 x 3 bytes)."""
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    rgb = np.empty((side, side, 3), np.uint8)
    rgb[:, :, 0] = ramp[None, :].astype(np.uint8)
    rgb[:, :, 1] = ramp[:, None].astype(np.uint8)
    rgb[:, :, 2] = 96
    return rgb


def inputs(folder: Path) -> dict[str, Path]:
    """Write the four hostile inputs into ``folder``."""
    photo = _photo(7_000)
    files = {
        "DICOM 10x10 carrying a 13,000^2 JPEG": jpeg_bomb_dicom(13_000, claimed=10),
        "PNG 7,000^2": encoded(photo, "PNG", compress_level=1),
        "JPEG-in-DICOM 7,000^2": dicom_bytes(
            frames=[encoded(photo, "JPEG", quality=90)],
            syntax="1.2.840.10008.1.2.4.50",
            rows=7_000,
            cols=7_000,
            samples=3,
            photometric="YBR_FULL_422",
        ),
        "Deflated DICOM bomb (10x10, 512 MiB inflated)": deflate_bomb_dicom(512 << 20),
    }
    del photo
    paths = {}
    for number, (name, data) in enumerate(files.items()):
        path = folder / f"input{number}.bin"
        path.write_bytes(data)
        paths[name] = path
    return paths


def child(path: str, threads: int) -> None:
    """Decode ``path`` in ``threads`` parallel threads; print the peak RSS increase (MB)."""
    import threading

    from retinascreen.data.images import load_image

    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))
    load_image(dicom_bytes(np.zeros((8, 8, 3), np.uint8)))  # imports and first-use caches
    load_image(encoded(np.zeros((8, 8, 3), np.uint8), "PNG"))
    data = Path(path).read_bytes()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcomes: list[str] = []

    def decode() -> None:
        try:
            shape = load_image(data, name="upload").shape
            outcomes.append(f"decoded {shape[1]}x{shape[0]}")
        except MemoryError:
            outcomes.append("MemoryError")
        except Exception as exc:  # noqa: BLE001 - the outcome is what we report
            outcomes.append(type(exc).__name__)

    workers = [threading.Thread(target=decode) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"mb": (peak - before) / 1024, "outcomes": sorted(set(outcomes))}))


def measure(src: Path, path: Path, threads: int) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(path), "--threads", str(threads)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if done.returncode != 0:
        return {"mb": float("nan"), "outcomes": [f"crashed ({done.returncode})"]}
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="the retinascreen src/")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.threads)
        return
    concurrency = os.environ.get("RETINASCREEN_DECODE_CONCURRENCY", "default")
    print(f"code: {args.src}  (RETINASCREEN_DECODE_CONCURRENCY={concurrency})")
    print(f"{'input':48} {'1 decode':>10} {'4 threads':>10}  outcome")
    with tempfile.TemporaryDirectory() as folder:
        for name, path in inputs(Path(folder)).items():
            one = measure(args.src, path, 1)
            four = measure(args.src, path, 4)
            outcome = ", ".join(sorted({*one["outcomes"], *four["outcomes"]}))  # type: ignore[misc]
            print(f"{name:48} {one['mb']:>7.0f} MB {four['mb']:>7.0f} MB  {outcome}")


if __name__ == "__main__":
    main()
