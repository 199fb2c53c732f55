"""The JPEG scan bomb: CPU to refuse it, and a normal upload's latency while 4 are in flight.

A 7,000 x 7,000 progressive JPEG with 4,000 near-empty scans (a few hundred kB) took about 30 s
of CPU to decode before the scan limit. This prints

- the CPU seconds ``load_image`` spends on it (refused from its markers),
- for scale, the CPU seconds Pillow spends decoding a 2,000 x 2,000 one with 1,000 scans,
- the median latency of a normal upload to a live ``retinascreen serve`` (2 workers, the tiny
  test model, SQLite) alone and while 4 clients keep uploading bombs, and their ratio.

    python bench/scan_bomb.py
    python bench/scan_bomb.py --uploads 9
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.jpeg_bombs import scan_bomb  # noqa: E402
from tests.helpers.live_server import live_server  # noqa: E402
from tests.helpers.models import make_model, save_model  # noqa: E402
from tests.helpers.web import fundus_png  # noqa: E402


def refusal_cpu(bomb: bytes) -> tuple[float, str]:
    from retinascreen.data.images import load_image
    from retinascreen.errors import ImageError

    start = time.process_time()
    try:
        load_image(bomb, name="bomb.jpg")
        outcome = "decoded (NOT refused)"
    except ImageError as exc:
        outcome = f"refused: {exc}"
    return time.process_time() - start, outcome


def decode_cpu(data: bytes) -> float:
    from PIL import Image

    start = time.process_time()
    with Image.open(io.BytesIO(data)) as image:
        image.load()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=7, help="normal uploads timed per phase")
    parser.add_argument("--bombers", type=int, default=4, help="clients sending bombs")
    args = parser.parse_args()

    bomb = scan_bomb(7_000, 7_000, scans=4_000)
    seconds, outcome = refusal_cpu(bomb)
    print(f"bomb: {len(bomb) / 1000:.0f} kB, 7000x7000, 4000 scans")
    print(f"  load_image CPU: {seconds:.3f} s, {outcome[:90]}")
    small = scan_bomb(2_000, 2_000, scans=1_000)
    print(
        f"  for scale, Pillow decoding a 2000x2000 one with 1000 scans: {decode_cpu(small):.1f} s CPU"
    )

    photo = fundus_png(size=512)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = save_model(make_model(), folder / "tiny.keras")
        with live_server(folder, model) as server:
            token = server.token()
            server.api_upload(token, photo)  # warm both paths

            def timed() -> list[float]:
                times = []
                for _ in range(args.uploads):
                    reply = server.api_upload(token, photo)
                    assert reply.status == 201, reply.text
                    times.append(reply.seconds)
                return times

            alone = timed()
            stop = threading.Event()
            answers: list[int] = []

            def bomber() -> None:
                while not stop.is_set():
                    answers.append(server.api_upload(token, bomb, "bomb.jpg").status)

            threads = [threading.Thread(target=bomber, daemon=True) for _ in range(args.bombers)]
            for thread in threads:
                thread.start()
            time.sleep(1.0)
            loaded = timed()
            stop.set()
            for thread in threads:
                thread.join(timeout=120)
    a, b = statistics.median(alone), statistics.median(loaded)
    print(
        f"normal upload, median of {args.uploads}: alone {a:.3f} s, with {args.bombers} bombers {b:.3f} s, ratio {b / a:.2f}"
    )
    print(f"bomb answers: {len(answers)} ({sorted(set(answers))})")


if __name__ == "__main__":
    main()
