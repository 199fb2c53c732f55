"""Time find_disc + assess_quality + crop_fundus on a 2000 px fundus-like photo (ms per photo),
and, within it, the learned score's ImageNet features (``lite0-b4``, ONNX Runtime, 2 threads)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.drawing import draw_fundus  # noqa: E402

from retinascreen.data.fundus import assess_quality, crop_fundus, field_crop, find_disc  # noqa: E402
from retinascreen.data.quality_backbone import pooled_features  # noqa: E402


def timed(step: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median and best wall time of ``step`` in ms."""
    step()
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        timings.append(time.perf_counter() - start)
    timings.sort()
    return 1000 * timings[len(timings) // 2], 1000 * timings[0]


def main(repeats: int = 20) -> None:
    photo = draw_fundus(2000)

    def gate() -> None:
        disc = find_disc(photo)
        assess_quality(photo, disc=disc)
        crop_fundus(photo, 299, disc=disc)

    disc = find_disc(photo)
    assert disc is not None
    field = field_crop(photo, disc)
    assert field is not None
    median, best = timed(gate, repeats)
    print(f"2000x2000 photo: quality + crop median {median:.1f} ms, best {best:.1f} ms")
    median, best = timed(lambda: pooled_features(*field), repeats)
    print(f"  of which lite0-b4 features: median {median:.1f} ms, best {best:.1f} ms")
    print(f"({repeats} runs)")


if __name__ == "__main__":
    main()
