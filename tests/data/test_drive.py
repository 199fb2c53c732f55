"""The DRIVE reader on the real data set (``../shared/data/drive``, never copied here).

Skipped with the reason when the folder is absent (a user's clone); fails in CI instead.
"""

from __future__ import annotations

import numpy as np
import pytest

from retinascreen.data.drive import crop_with_masks, read_drive
from retinascreen.errors import DatasetError
from tests.helpers import photo_sets as sets


@pytest.fixture(scope="module")
def test_split():
    sets.require_shared_data()
    return read_drive(sets.SHARED_DATA / "drive", "test")


def test_drive_test_split_has_photos_fields_and_both_observers(test_split):
    assert len(test_split) == 20
    for photo in test_split:
        assert photo.image.shape == (584, 565, 3) and photo.image.dtype == np.uint8
        assert photo.second is not None  # including the files named "vessel(N).gif"
        share = photo.vessels[photo.field].mean()
        assert 0.08 < share < 0.2, photo.name  # vessels are ~12 % of the field
        assert photo.vessels[~photo.field].mean() < 0.001  # annotations lie in the field


def test_masks_are_cut_with_the_photo_so_they_stay_aligned(test_split):
    photo = test_split[0]
    view, cut = crop_with_masks(photo.image, {"v": photo.vessels, "f": photo.field}, 576)
    assert view.shape == (576, 576, 3) and cut["v"].shape == (576, 576)
    green = view[..., 1].astype(float)
    # Vessels are darker than the background in the green channel of the same crop.
    assert green[cut["v"]].mean() < green[cut["f"] & ~cut["v"]].mean() - 5
    assert abs(cut["v"][cut["f"]].mean() - photo.vessels[photo.field].mean()) < 0.01


def test_a_folder_without_the_drive_layout_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="no images/ folder"):
        read_drive(tmp_path, "test")
    with pytest.raises(DatasetError, match="unknown DRIVE split"):
        read_drive(tmp_path, "validation")


def test_bundled_vessel_model_finds_the_vessels_of_an_unseen_drive_photo(test_split):
    import keras

    from retinascreen.models.modelcard import preprocessing_for, read_card
    from retinascreen.models.segmentation import bundled_segmenter
    from retinascreen.training.segmentation import drive_data, pixel_metrics

    path = bundled_segmenter("vessels")
    card = read_card(path)
    photo = test_split[0]
    view = preprocessing_for(card, card.input_size).apply(photo.image)  # what a user's photo gets
    data = drive_data([photo], card.input_size, clahe=card.preprocessing["clahe"])
    assert np.array_equal(view, data.views[0])  # training and serving see the same pixels
    model = keras.models.load_model(path, compile=False)
    maps = np.asarray(model(view[None].astype(np.float32)))[0, ..., 0]
    figures = pixel_metrics(maps, data.targets[0, ..., 0], data.fields[0], card.thresholds[0])
    assert figures["auc"] > 0.95 and figures["f1"] > 0.75, figures
