"""How fast the synthetic generator draws fundus photographs on this machine.

    .venv/bin/python bench/synth.py [--n 100] [--size 512]

Prints images/s for ``generate`` in one process, then for ``write_dataset`` (APTOS layout,
PNG + masks on disk) with one and with two worker processes.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import cv2

from retinascreen.synthetic import generate, write_dataset


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    cv2.setNumThreads(1)  # one core, as a worker process runs
    generate(0, size=args.size)  # warm-up (imports, noise pool)
    start, cpu = time.perf_counter(), time.process_time()
    for seed in range(args.n):
        generate(seed, size=args.size)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(
        f"generate, 1 process:          {args.n / elapsed:6.1f} images/s at {args.size} px "
        f"({1000 * elapsed / args.n:.1f} ms wall, {1000 * cpu / args.n:.1f} ms CPU each; "
        f"{args.n / cpu:.1f} images per CPU-second)"
    )
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            write_dataset(tmp, args.n, size=args.size, workers=workers, progress=False)
            elapsed = time.perf_counter() - start
        print(
            f"write_dataset, {workers} worker(s):    {args.n / elapsed:6.1f} images/s at {args.size} px "
            "(PNG + masks written)"
        )


if __name__ == "__main__":
    main()
