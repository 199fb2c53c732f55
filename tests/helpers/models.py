"""Tiny models and photo folders for the inference, export, screening and CLI tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.helpers.drawing import draw_face, draw_fundus

SIZE = 64


def make_model(seed: int = 0, *, near_ties: list[Path] | None = None, head: str = "wise-srnet"):
    """An untrained mini_xception (widths 8, 16) at 64 px with seeded weights.

    The last Dense layer is re-scaled on a few drawn photographs so that grades differ between
    photographs with clear margins (an untrained net otherwise outputs ~uniform 20 %). With
    ``near_ties`` (photos), see :func:`_near_tie_dense`: fp32 separates grades 0 and 1 on those
    photos by wide margins, int8 weights cannot separate them at all.
    """
    import keras

    from retinascreen.data.fundus import Preprocessing
    from retinascreen.models.build import build_model

    keras.utils.set_random_seed(seed)
    model = build_model("mini_xception", head, size=SIZE, widths=(8, 16))
    last = model.layers[-1]
    features = keras.Model(model.inputs, last.input)
    pre = Preprocessing(size=SIZE)
    x = np.stack([pre.apply(photo_array(s)) for s in range(16)]).astype(np.float32)
    f = np.asarray(features.predict(x, verbose=0))
    mean, std = f.mean(axis=0), f.std(axis=0)
    std = np.where(std > 0.05 * std.max(), std, np.inf)  # dead features get no weight
    rng = np.random.default_rng(seed)
    kernel = rng.standard_normal((f.shape[1], 5)) / std[:, None]
    kernel *= 3.0 / ((f - mean) @ kernel).std()  # logits spread ~3 across photographs
    bias = -(mean @ kernel)
    if near_ties:
        from retinascreen.data.images import load_image

        x = np.stack([pre.apply(load_image(p)) for p in near_ties]).astype(np.float32)
        kernel, bias = _near_tie_dense(np.asarray(features.predict(x, verbose=0)), rng)
    last.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return model


def _near_tie_dense(feats: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A Dense (kernel, bias) whose grade 0 / grade 1 choice int8 weights cannot make.

    Column 0 lies exactly on the int8 grid (integers times one scale, the largest entry of the
    kernel at +127 steps, every row's largest entry in column 0); column 1 is column 0 plus less
    than a quarter step, zero on the largest entry. So per-tensor, per-column and per-row
    symmetric int8 all round columns 0 and 1 to the same integers, and the int8 model gives every
    photo the same one of the two grades. In fp32 the difference ``feats @ delta`` spreads the
    photos and the bias puts the boundary in the widest gap near the median, so every photo is
    far (in float32 terms) from a tie and Keras, ONNX Runtime and any kernel set agree on it.
    Grades 2-4 get zero weights and a -30 bias.
    """
    n_features = feats.shape[1]
    step = 1.0 / 127
    levels = rng.integers(64, 127, n_features) * rng.choice([-1, 1], n_features)
    top = int(np.argmax(feats.std(axis=0)))
    levels[top] = 127
    kernel = np.zeros((n_features, 5))
    kernel[:, 0] = levels * step
    centred = feats - feats.mean(axis=0)
    direction = np.linalg.svd(centred, full_matrices=False)[2][0]  # the widest spread
    delta = 0.24 * step * np.sign(direction)
    delta[top] = 0.0
    kernel[:, 1] = kernel[:, 0] + delta
    margins = np.sort(feats @ delta)
    middle = margins[len(margins) // 3 : 2 * len(margins) // 3 + 1]
    widest = int(np.argmax(np.diff(middle)))
    threshold = float(middle[widest] + middle[widest + 1]) / 2
    common = -float(feats.mean(axis=0) @ kernel[:, 0])
    bias = np.array([common, common - threshold, -30.0, -30.0, -30.0])
    return kernel, bias


def save_model(model, path: Path, *, synthetic: bool = True, name: str = "tiny") -> Path:
    """Save ``model`` as .keras with a model card inside."""
    from retinascreen.models.modelcard import ModelCard, write_card

    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    card = ModelCard(
        name=name,
        version="0.1",
        backbone="mini_xception",
        head="wise-srnet",
        input_size=SIZE,
        preprocessing={"size": SIZE},
        synthetic=synthetic,
    )
    write_card(path, card)
    return path


def write_photos(folder: Path, n: int, *, size: int = 96, start_seed: int = 0) -> list[Path]:
    """``n`` fundus-like PNG photographs with varied exposure."""
    from retinascreen.data.images import save_image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        paths.append(save_image(folder / f"img{i:03d}.png", photo_array(start_seed + i, size)))
    return paths


def photo_array(seed: int, size: int = 96) -> np.ndarray:
    """A fundus-like RGB photograph with a few seeded bright and dark spots."""
    rgb = draw_fundus(size, seed=seed, gain=0.8 + 0.05 * (seed % 8))
    rng = np.random.default_rng(seed)
    for _ in range(1 + seed % 4):
        y, x = rng.integers(size // 4, 3 * size // 4, 2)
        value = (255, 240, 120) if rng.random() < 0.5 else (90, 10, 10)
        rgb[y - 3 : y + 3, x - 3 : x + 3] = value
    return rgb


def write_face(path: Path, size: int = 96) -> Path:
    from retinascreen.data.images import save_image

    return save_image(path, draw_face(size))


def write_bad_files(folder: Path) -> dict[str, Path]:
    """One file for each bad input of SPEC.md except the non-fundus photo."""
    folder.mkdir(parents=True, exist_ok=True)
    good = draw_fundus(96, seed=3)
    from retinascreen.data.images import save_image

    png = save_image(folder / "tmp_good.png", good).read_bytes()
    (folder / "tmp_good.png").unlink()
    files = {
        "zero": folder / "zero.png",
        "truncated": folder / "truncated.png",
        "text": folder / "notes.jpg",
        "gif": folder / "anim.gif",
        "bomb": folder / "bomb.png",
    }
    files["zero"].write_bytes(b"")
    files["truncated"].write_bytes(png[: len(png) // 2])
    files["text"].write_text("this is not a photograph\n" * 20)
    files["gif"].write_bytes(b"GIF89a" + b"\x01\x00\x01\x00\x00\x00\x00" + b"\x00" * 30)
    files["bomb"].write_bytes(_png_header(20_000, 20_000))
    return files


def _png_header(width: int, height: int) -> bytes:
    """A valid PNG of ``width`` x ``height`` black pixels compressed to almost nothing."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * width
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(64)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
