"""Inference speed: the seed project's way vs Predictor (Keras), ONNX Runtime fp32 and int8.

Run: ``.venv/bin/python bench/inference.py [--quick] [--n 32] [--also NAME=MODEL.keras]``. For Xception at 299 px (random
weights: speed only) and the demo model (else mini_xception + wise-srnet at 256 px) it prints
images/s at batch 1 and 16 and single-image latency for
  (a) seed: keras.utils.load_img + img_to_array + preprocess + model.predict per image,
  (b) Predictor on Keras, (c) ONNX Runtime fp32, (d) ONNX Runtime int8,
as ratios to (a), the grade agreement of (c) and (d) with (a), a sweep of intra-op threads,
batch size and graph optimisation level, and the achieved GFLOP/s as a share of the CPU's fp32
peak (cores x GHz x FLOPs/cycle; assumption: 2 FMA units per core, so 32 FLOPs/cycle with
AVX2/FMA, 64 with AVX-512, 16 with AVX only).
Targets: ONNX fp32 >= 1.3x and int8 >= 2x the seed way's throughput at >= 98 % agreement.
Random-weight agreement is not meaningful (near-tie outputs); the demo model's is.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402


def cpu_peak_gflops() -> tuple[float, str]:
    """fp32 peak estimate from /proc/cpuinfo and the AVX level in its flags."""
    cores = os.cpu_count() or 1
    flags, mhz = "", 0.0
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("flags") and not flags:
                flags = line
            if line.startswith("cpu MHz") and not mhz:
                mhz = float(line.split(":")[1])
    except OSError:
        pass
    ghz = mhz / 1000 if mhz else 2.5
    per_cycle, level = 8, "SSE"
    if "avx512f" in flags:
        per_cycle, level = 64, "AVX-512 (2 FMA units)"
    elif "avx2" in flags and "fma" in flags:
        per_cycle, level = 32, "AVX2+FMA (2 FMA units)"
    elif "avx" in flags:
        per_cycle, level = 16, "AVX"
    peak = cores * ghz * per_cycle
    return (
        peak,
        f"{cores} cores x {ghz:.2f} GHz x {per_cycle} FLOPs/cycle ({level}) = {peak:.0f} GFLOP/s",
    )


def write_images(folder: Path, n: int, size: int, first_seed: int = 7_000_000) -> list[Path]:
    """Synthetic fundus photos of every grade (JPEG), unseen by the demo model's training."""
    from retinascreen.data.images import save_image
    from retinascreen.synthetic import generate

    folder.mkdir(parents=True, exist_ok=True)
    return [
        save_image(folder / f"b{i:03d}.jpg", generate(first_seed + i, i % 5, size=size).image)
        for i in range(n)
    ]


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def seed_way(model, paths, size):
    """classify_image.py: load_img + img_to_array + expand + preprocess + predict, per image."""
    import keras

    out = []
    for p in paths:
        image = keras.utils.img_to_array(keras.utils.load_img(p, target_size=(size, size)))
        out.append(model.predict(np.expand_dims(image, 0), verbose=0)[0])
    return np.array(out)


def onnx_session(path, threads, level):
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    o.graph_optimization_level = level
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def bench_model(name, keras_path, paths, calib_dir, check_dir, args) -> None:
    import onnxruntime as ort

    from retinascreen.models.build import count_flops
    from retinascreen.models.engines import load_keras_model
    from retinascreen.serving.export import export_model
    from retinascreen.serving.predictor import Predictor

    model = load_keras_model(keras_path)
    size = int(model.input_shape[1])
    flops = count_flops(model)
    print(f"\n== {name}: {size} px, {flops / 1e9:.2f} GFLOPs per image ==")
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))  # never beside the model (demo_model/)
    fp32 = export_model(keras_path, tmp / f"{name}.onnx", check=check_dir, min_agreement=0).path
    try:
        int8 = export_model(
            keras_path,
            tmp / f"{name}-int8.onnx",
            int8=True,
            calibration=calib_dir,
            check=check_dir,
            min_agreement=0,
        ).path
    except Exception as exc:  # noqa: BLE001 - report and go on
        print(f"int8 export failed: {exc}")
        int8 = None
    n = len(paths)
    rows = {}
    t = timed(lambda: seed_way(model, paths, size), 1)
    rows["(a) seed way"] = (n / t, None, t / n)
    keras_p = Predictor(keras_path, engine="keras")
    x = np.stack([keras_p.prepare(p).pixels for p in paths]).astype(np.float32)
    t1 = timed(lambda: [keras_p.predict_arrays(x[i : i + 1]) for i in range(n)], 1)
    t16 = timed(lambda: [keras_p.predict_arrays(x[i : i + 16]) for i in range(0, n, 16)], 1)
    tp = timed(lambda: keras_p.predict_batch(paths, batch_size=16), 1)
    rows["(b) Predictor keras"] = (n / t1, n / t16, t1 / n)
    ref = np.concatenate([keras_p.predict_arrays(x[i : i + 16]) for i in range(0, n, 16)])
    print(
        f"(b) Predictor end to end (decode + quality + crop + model, batch 16): {n / tp:.1f} img/s"
    )
    agreements = {}
    for label, path in (("(c) onnx fp32", fp32), ("(d) onnx int8", int8)):
        if path is None:
            continue
        best = None
        for threads in (1, 2):
            for level_name, level in (
                ("basic", ort.GraphOptimizationLevel.ORT_ENABLE_BASIC),
                ("all", ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
            ):
                s = onnx_session(path, threads, level)
                inp = s.get_inputs()[0].name
                for bs in (16,):
                    t = timed(
                        lambda s=s, inp=inp, bs=bs: [
                            s.run(None, {inp: x[i : i + bs]}) for i in range(0, n, bs)
                        ],
                        1,
                    )
                    ips = n / t
                    print(
                        f"   {label} threads={threads or 'all'} opt={level_name} batch={bs}: {ips:.1f} img/s"
                    )
                    if best is None or ips > best[0]:
                        best = (ips, threads, level_name, bs)
        print(
            f"   best {label}: {best[0]:.1f} img/s with threads={best[1] or 'all'}, opt={best[2]}, batch={best[3]}"
        )
        s = onnx_session(path, 0, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        inp = s.get_inputs()[0].name
        t1 = timed(lambda s=s, inp=inp: [s.run(None, {inp: x[i : i + 1]}) for i in range(n)], 1)
        t16 = timed(
            lambda s=s, inp=inp: [s.run(None, {inp: x[i : i + 16]}) for i in range(0, n, 16)], 1
        )
        probs = np.concatenate([s.run(None, {inp: x[i : i + 16]})[0] for i in range(0, n, 16)])
        agreements[label] = float(np.mean(probs.argmax(1) == ref.argmax(1)))
        rows[label] = (n / t1, n / t16, t1 / n)
    print(
        "note: (a) includes JPEG decoding and resizing per image; (b)-(d) time the model on "
        "decoded, pre-processed pixels (see the end-to-end Predictor line above); agreement = "
        "same grade as (b) Keras on the same pixels; % peak compares with the fp32 peak, so "
        "int8 can exceed 100 %"
    )
    base = rows["(a) seed way"][0]
    peak, peak_text = cpu_peak_gflops()
    print(f"CPU fp32 peak estimate: {peak_text}")
    print(
        f"{'engine':24s} {'b1 img/s':>9s} {'b16 img/s':>10s} {'latency ms':>11s} {'x seed':>7s} {'GFLOP/s':>8s} {'% peak':>7s} agreement"
    )
    for label, (b1, b16, lat) in rows.items():
        best = max(b1, b16 or 0)
        gflops = best * flops / 1e9
        agree = f"{agreements[label]:.1%}" if label in agreements else "-"
        b16_text = f"{b16:10.1f}" if b16 else f"{'-':>10s}"
        print(
            f"{label:24s} {b1:9.1f} {b16_text} {lat * 1000:11.1f} {best / base:7.2f} {gflops:8.1f} {100 * gflops / peak:6.1f}% {agree}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=32, help="images timed per configuration")
    parser.add_argument(
        "--n-xception",
        type=int,
        default=16,
        help="images timed per configuration for Xception (slow on a CPU)",
    )
    parser.add_argument("--quick", action="store_true", help="mini models only (a smoke run)")
    parser.add_argument("--models", choices=("all", "xception", "demo"), default="all")
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="NAME=MODEL.keras",
        help="time another model in the same run, e.g. the previous bundled model: "
        "git show 164cae8:src/retinascreen/demo_model/demo.keras > old.keras; "
        "--also old-demo=old.keras",
    )
    args = parser.parse_args()
    from retinascreen.models.build import build_model
    from retinascreen.models.engines import DEMO_DIR

    tmp = Path(tempfile.mkdtemp(prefix="bench-inference-"))
    paths = write_images(tmp / "images", args.n, 512)
    write_images(tmp / "calibration", 40, 512, first_seed=8_000_000)
    models = []
    if not args.quick and args.models in ("all", "xception"):
        xception = tmp / "xception.keras"
        build_model("xception", "wise-srnet", size=299, weights="none").save(xception)
        models.append(("xception-299", xception))
    demo = DEMO_DIR / "demo.keras"
    if args.models == "xception":
        pass
    elif demo.is_file() and not args.quick:
        models.append(("demo", demo))
    else:
        mini = tmp / "mini.keras"
        build_model("mini_xception", "wise-srnet", size=256 if not args.quick else 96).save(mini)
        models.append(("mini_xception-wise-srnet", mini))
    for item in args.also:
        name, _, path = item.partition("=")
        models.append((name, Path(path)))
    for name, path in models:
        timed_paths = paths[: args.n_xception] if name.startswith("xception") else paths
        bench_model(name, path, timed_paths, tmp / "calibration", tmp / "images", args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
