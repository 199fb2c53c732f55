"""Raw-camera versions of training photos: cached once, pre-processed like a clinic's photo,
and shown in place of the photo about half the time."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from retinascreen.data.datasets import Record, load_dataset
from retinascreen.data.fundus import Preprocessing
from retinascreen.data.pipeline import cache_crops, make_dataset
from retinascreen.training.camera_variants import cache_camera_variants
from tests.helpers.layouts import write_aptos

SIZE = 32


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> list[Record]:
    return load_dataset(write_aptos(tmp_path_factory.mktemp("aptos"), n=12), "aptos")


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_variants_are_other_looks_of_the_same_photo_made_once(records, tmp_path):
    prep = Preprocessing(size=SIZE, equalize=True)
    variants = cache_camera_variants(records, prep, 2, tmp_path)
    plain = cache_crops(records, prep, tmp_path)
    assert [len(v) for v in variants] == [2] * len(records)
    first, second = _pixels(variants[0][0]), _pixels(variants[0][1])
    assert first.shape == (SIZE, SIZE, 3)
    assert not np.array_equal(first, second)  # two different cameras
    assert not np.array_equal(first, _pixels(plain[0]))
    # The same field: the version is black where the photo's crop is black, mostly.
    outside = _pixels(plain[0]).max(axis=2) == 0
    assert (first.max(axis=2)[outside] < 30).mean() > 0.8
    mtimes = [p.stat().st_mtime_ns for v in variants for p in v]
    again = cache_camera_variants(records, prep, 2, tmp_path)
    assert again == variants
    assert [p.stat().st_mtime_ns for v in again for p in v] == mtimes  # reused, not remade


def test_training_shows_each_photo_as_itself_or_one_of_its_versions(records, tmp_path):
    prep = Preprocessing(size=SIZE)
    alternatives = cache_camera_variants(records, prep, 2, tmp_path)
    plain = cache_crops(records, prep, tmp_path)
    looks = {}
    for i, (own, alts) in enumerate(zip(plain, alternatives, strict=True)):
        for kind, path in (("own", own), ("alt", alts[0]), ("alt", alts[1])):
            looks[_pixels(path).astype("float32").tobytes()] = (kind, records[i].grade)
    ds = make_dataset(
        records,
        preprocessing=prep,
        batch_size=4,
        training=True,
        augment=False,
        cache_dir=tmp_path,
        alternatives=alternatives,
    )
    kinds = []
    for _ in range(4):
        for images, labels in ds:
            for image, label in zip(images.numpy(), labels.numpy(), strict=True):
                kind, grade = looks[image.tobytes()]  # every image is one of the cached looks
                assert grade == label  # with its own photo's grade
                kinds.append(kind)
    assert len(kinds) == 4 * len(records)
    assert 0.2 < kinds.count("alt") / len(kinds) < 0.8


def test_alternatives_must_match_the_records(records, tmp_path):
    prep = Preprocessing(size=SIZE)
    alternatives = cache_camera_variants(records, prep, 1, tmp_path)
    with pytest.raises(ValueError, match="same number"):
        make_dataset(
            records,
            preprocessing=prep,
            batch_size=4,
            training=True,
            cache_dir=tmp_path,
            alternatives=alternatives[:-1],
        )
