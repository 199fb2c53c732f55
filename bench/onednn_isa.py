"""What the oneDNN AVX2 cap costs: Keras inference, heat maps and training, capped vs not.

Run: ``.venv/bin/python bench/onednn_isa.py [--rounds 3]``. retinascreen caps oneDNN at AVX2 on
x86-64 (``ONEDNN_MAX_CPU_ISA=AVX2``, see ``src/retinascreen/_backend.py``) because its AVX-512
1x1 backward-weights kernel corrupts memory. This times, in fresh processes taking turns
(so both see the same machine load), the demo model's Keras forward pass at batch 1 and 16,
one heat map, and a mini_xception training step at batch 16 (an even batch, which the faulty
kernel survives), with the cap (AVX2) and without it (DEFAULT: AVX-512 where the CPU has it).
On a CPU without AVX-512 both settings run the same kernels and the ratio is ~1.
ONNX Runtime, which serves predictions, does not use oneDNN and is not affected.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKER = r"""
import json, time
import numpy as np
from retinascreen.serving.predictor import Predictor
from retinascreen.synthetic import generate
from retinascreen.models.build import build_model

def rate(fn, n_images, repeat):
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return n_images * repeat / (time.perf_counter() - start)

predictor = Predictor(engine="keras")
size = int(predictor.input_size)
rng = np.random.default_rng(0)
x16 = rng.uniform(0, 255, (16, size, size, 3)).astype("float32")
photo = generate(7_000_001, grade=3, size=512).image
train = build_model("mini_xception", "wise-srnet", size=128, widths=(32, 64, 128))
train.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
xt = rng.uniform(0, 255, (16, 128, 128, 3)).astype("float32")
yt = rng.integers(0, 5, 16)
print(json.dumps({
    "keras b1 img/s": rate(lambda: predictor.predict_arrays(x16[:1]), 1, 30),
    "keras b16 img/s": rate(lambda: predictor.predict_arrays(x16), 16, 5),
    "heat maps/s": rate(lambda: predictor.heatmap(photo), 1, 10),
    "train img/s": rate(lambda: train.train_on_batch(xt, yt), 16, 5),
}))
"""


def measure(isa: str) -> dict[str, float]:
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA=isa, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = str(ROOT / "src")
    done = subprocess.run(
        [sys.executable, "-c", WORKER], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="processes per setting, taking turns")
    args = parser.parse_args()
    avx512 = (
        "avx512f" in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else False
    )
    print(f"CPU has AVX-512: {avx512}; {os.cpu_count()} cores; {args.rounds} rounds")
    runs: dict[str, list[dict[str, float]]] = {"AVX2": [], "DEFAULT": []}
    for _ in range(args.rounds):
        for isa in runs:
            runs[isa].append(measure(isa))
    print(f"{'measure':<18} {'AVX2 (cap)':>12} {'DEFAULT':>12} {'cap / default':>14}")
    for key in runs["AVX2"][0]:
        capped = statistics.median(r[key] for r in runs["AVX2"])
        default = statistics.median(r[key] for r in runs["DEFAULT"])
        print(f"{key:<18} {capped:>12.2f} {default:>12.2f} {capped / default:>14.2f}")


if __name__ == "__main__":
    main()
