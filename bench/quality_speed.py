"""Time find_disc + assess_quality + crop_fundus on a 2000 px fundus-like photo (ms per photo)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.drawing import draw_fundus  # noqa: E402

from retinascreen.data.fundus import assess_quality, crop_fundus, find_disc  # noqa: E402


def main(repeats: int = 20) -> None:
    photo = draw_fundus(2000)
    assess_quality(photo)
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        disc = find_disc(photo)
        assess_quality(photo, disc=disc)
        crop_fundus(photo, 299, disc=disc)
        timings.append(time.perf_counter() - start)
    timings.sort()
    print(
        f"2000x2000 photo: quality + crop median {1000 * timings[len(timings) // 2]:.1f} ms, "
        f"best {1000 * timings[0]:.1f} ms over {repeats} runs"
    )


if __name__ == "__main__":
    main()
