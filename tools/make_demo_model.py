"""Train and bundle the demo model: ``make demo-model`` (one reproducible command).

1. trains ``configs/demo.toml`` (mini_xception + Wise-SrNet, 256 px, synthetic-dr-v1, from
   scratch; the CPU-budget recipe) into ``runs/demo`` (resumes if interrupted);
2. names the model card ``retinascreen-demo`` and states that it was trained on synthetic images
   and is not for clinical use;
3. exports it to ONNX fp32 (checked against Keras) and copies both files to
   ``src/retinascreen/demo_model/`` where ``Predictor()`` finds them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_DIR = ROOT / "src" / "retinascreen" / "demo_model"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "demo.toml"))
    parser.add_argument("--run", default=str(ROOT / "runs" / "demo"))
    parser.add_argument("--skip-training", action="store_true", help="bundle an existing run")
    args = parser.parse_args(argv)

    from retinascreen import __version__
    from retinascreen.models.modelcard import SYNTHETIC_INTENDED_USE, read_card, write_card
    from retinascreen.serving.export import export_model
    from retinascreen.training.config import load_config
    from retinascreen.training.loop import train
    from retinascreen.training.run import BEST_MODEL_FILE

    run = Path(args.run)
    if not args.skip_training:
        started = time.perf_counter()
        train(load_config(args.config).replace(out=str(run)))
        print(f"trained in {(time.perf_counter() - started) / 60:.1f} min", flush=True)

    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    keras_path = DEMO_DIR / "demo.keras"
    shutil.copyfile(run / BEST_MODEL_FILE, keras_path)
    card = read_card(keras_path)
    card.name = "retinascreen-demo"
    card.version = __version__
    card.synthetic = True
    card.intended_use = SYNTHETIC_INTENDED_USE
    write_card(keras_path, card)
    report = export_model(keras_path, DEMO_DIR / "demo.onnx", log=print)
    print(report)
    for path in sorted(DEMO_DIR.iterdir()):
        print(f"{path.relative_to(ROOT)}  {path.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
