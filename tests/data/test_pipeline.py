"""The tf.data input pipeline: cached crops, batches a model can take, augmentation only in training."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

from retinascreen.data.datasets import Record, load_dataset
from retinascreen.data.fundus import Preprocessing
from retinascreen.data.pipeline import UnreadableImagesError, cache_crops, make_dataset
from tests.helpers.layouts import write_aptos

SIZE = 32


@dataclass(frozen=True)
class CountingPreprocessing(Preprocessing):
    """The real pre-processing, counting how many photos it crops."""

    calls: ClassVar[list[str]] = []

    def apply(self, rgb):
        CountingPreprocessing.calls.append("crop")
        return super().apply(rgb)


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> list[Record]:
    return load_dataset(write_aptos(tmp_path_factory.mktemp("aptos"), n=10), "aptos")


def _epoch(ds):
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in ds], strict=True)
    return np.concatenate(images), np.concatenate(labels)


def test_batches_have_model_shapes_dtypes_and_range(records, tmp_path):
    ds = make_dataset(
        records,
        preprocessing=Preprocessing(size=SIZE),
        batch_size=4,
        training=True,
        cache_dir=tmp_path,
    )
    batches = list(ds)
    assert [int(x.shape[0]) for x, _ in batches] == [4, 4, 2]
    for x, y in batches:
        assert x.shape[1:] == (SIZE, SIZE, 3) and x.dtype.name == "float32"
        assert y.dtype.name == "int32"
        assert float(x.numpy().min()) >= 0.0 and float(x.numpy().max()) <= 255.0
    assert float(batches[0][0].numpy().max()) > 100  # pixels are 0..255, not 0..1


def test_validation_is_the_exact_crops_in_record_order(records, tmp_path):
    prep = Preprocessing(size=SIZE)
    ds = make_dataset(records, preprocessing=prep, batch_size=3, training=False, cache_dir=tmp_path)
    images, labels = _epoch(ds)
    again, _ = _epoch(ds)
    assert labels.tolist() == [r.grade for r in records]
    np.testing.assert_array_equal(images, again)
    crops = cache_crops(records, prep, tmp_path)
    expected = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in crops]).astype("float32")
    np.testing.assert_array_equal(images, expected)
    direct = prep.apply(np.asarray(Image.open(records[0].path).convert("RGB")))
    np.testing.assert_array_equal(images[0], direct)


def test_augmentation_changes_training_batches(records, tmp_path):
    prep = Preprocessing(size=SIZE)
    plain = make_dataset(
        records, preprocessing=prep, batch_size=10, training=True, cache_dir=tmp_path, augment=False
    )
    crops, _ = _epoch(
        make_dataset(records, preprocessing=prep, batch_size=10, training=False, cache_dir=tmp_path)
    )
    shuffled, labels = _epoch(plain)
    assert sorted(labels.tolist()) == sorted(r.grade for r in records)
    assert all(any(np.array_equal(img, c) for c in crops) for img in shuffled)

    augmented = make_dataset(
        records, preprocessing=prep, batch_size=10, training=True, cache_dir=tmp_path, seed=1
    )
    first, _ = _epoch(augmented)
    second, _ = _epoch(augmented)
    assert not any(np.array_equal(img, c) for img in first for c in crops)
    assert np.abs(first - second).mean() > 1.0  # new augmentations every epoch


def test_cache_written_once_and_reused(records, tmp_path):
    prep = CountingPreprocessing(size=SIZE)
    CountingPreprocessing.calls.clear()
    first = cache_crops(records, prep, tmp_path)
    assert len(CountingPreprocessing.calls) == len(records)
    mtimes = [p.stat().st_mtime_ns for p in first]
    second = cache_crops(records, prep, tmp_path)
    make_dataset(records, preprocessing=prep, batch_size=4, training=False, cache_dir=tmp_path)
    assert second == first
    assert [p.stat().st_mtime_ns for p in second] == mtimes
    assert len(CountingPreprocessing.calls) == len(records)  # second run decoded nothing
    assert len(list(first[0].parent.glob("*.png"))) == len(records)


def test_changed_settings_or_source_get_new_crops(records, tmp_path):
    base = cache_crops(records[:2], Preprocessing(size=SIZE), tmp_path)
    enhanced = cache_crops(records[:2], Preprocessing(size=SIZE, clahe=True), tmp_path)
    bigger = cache_crops(records[:2], Preprocessing(size=SIZE + 8), tmp_path)
    assert not set(base) & set(enhanced) and not set(base) & set(bigger)
    assert np.asarray(Image.open(bigger[0])).shape == (SIZE + 8, SIZE + 8, 3)

    source = records[0].path
    st = source.stat()
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the photo was replaced
    try:
        again = cache_crops(records[:2], Preprocessing(size=SIZE), tmp_path)
    finally:
        os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert again[0] != base[0] and again[1] == base[1]


def test_crops_of_older_crop_code_are_not_reused(records, tmp_path, monkeypatch):
    from retinascreen.data import crop

    before = cache_crops(records[:2], Preprocessing(size=SIZE), tmp_path)
    monkeypatch.setattr(crop, "CROP_CODE_VERSION", crop.CROP_CODE_VERSION + 1)
    after = cache_crops(records[:2], Preprocessing(size=SIZE), tmp_path)
    assert not set(before) & set(after)  # the new code crops afresh
    assert before[0].parent != after[0].parent


def test_bad_images_reported_together_before_training(records, tmp_path):
    broken = tmp_path / "photos"
    broken.mkdir()
    (broken / "empty.png").write_bytes(b"")
    data = records[0].path.read_bytes()
    (broken / "cut.png").write_bytes(data[: len(data) // 3])
    bad = [Record(broken / "empty.png", 0, "e"), Record(broken / "cut.png", 1, "c")]
    with pytest.raises(UnreadableImagesError) as err:
        make_dataset(
            [*records[:3], *bad],
            preprocessing=Preprocessing(size=SIZE),
            batch_size=2,
            training=True,
            cache_dir=tmp_path / "cache",
        )
    message = str(err.value)
    assert message.startswith("2 of 5 images could not be read")
    assert "empty.png" in message and "cut.png" in message
    assert [p for p, _ in err.value.failures] == [broken / "empty.png", broken / "cut.png"]
    # the good photos were cached all the same
    assert len(list((tmp_path / "cache").rglob("*.png"))) == 3


def test_empty_record_list_is_a_clear_error(tmp_path):
    from retinascreen.errors import DatasetError

    with pytest.raises(DatasetError, match="no images"):
        make_dataset(
            [],
            preprocessing=Preprocessing(size=SIZE),
            batch_size=2,
            training=True,
            cache_dir=tmp_path,
        )


def test_shuffle_is_seeded(records, tmp_path):
    prep = Preprocessing(size=SIZE)

    def order(seed):
        ds = make_dataset(
            records,
            preprocessing=prep,
            batch_size=10,
            training=True,
            cache_dir=tmp_path,
            seed=seed,
            augment=False,
        )
        return _epoch(ds)[1].tolist()

    assert order(3) == order(3)
    assert order(3) != [r.grade for r in records]  # shuffled, yet reproducible


def test_synthetic_photos_through_the_pipeline(tmp_path):
    from retinascreen.synthetic import write_dataset

    root = write_dataset(tmp_path / "data", 6, size=96, seed=1, layout="eyepacs", workers=1)
    records = load_dataset(root, "eyepacs")
    ds = make_dataset(
        records,
        preprocessing=Preprocessing(size=SIZE, ben_graham=True),
        batch_size=4,
        training=True,
        cache_dir=tmp_path / "cache",
    )
    images, labels = _epoch(ds)
    assert images.shape == (6, SIZE, SIZE, 3)
    assert sorted(labels.tolist()) == sorted(r.grade for r in records)
    assert images.std() > 5  # real picture content, not a blank frame
