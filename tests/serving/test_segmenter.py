"""The Segmenter: maps on the grading crop, masks at the card's thresholds, overlay, density."""

from __future__ import annotations

import numpy as np
import pytest

from retinascreen.data.fundus import crop_fundus
from retinascreen.errors import ModelError, NotAnImageError
from retinascreen.serving.segmenter import CLASS_COLOURS, Segmenter
from tests.helpers.drawing import draw_fundus
from tests.helpers.segmentation import (
    LESION_CLASSES,
    left_neighbour_segmenter,
    save_tiny_segmenter,
)


@pytest.fixture(scope="module")
def photo():
    return draw_fundus(160, 200, seed=2)  # a wide frame: the crop must still match the grader's


def test_maps_align_with_the_grading_crop_and_clear_outside_the_field(segmentation_models, photo):
    result = Segmenter(segmentation_models["vessels"]).segment(photo)
    maps, view = result.maps["vessels"], result.view
    assert maps.shape == (64, 64) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    # the same square the Predictor crops at the card's size
    assert np.array_equal(view, crop_fundus(photo, 64))
    assert result.field[32, 32] and not result.field[0, 0]
    assert maps[~result.field].max() == 0.0 and not result.masks["vessels"][~result.field].any()
    assert result.model["name"] == "tiny-vessels" and len(result.model["sha256"]) == 64
    # the drawn vessels (dark in green) are found, the orange background is not
    green = view[:, :, 1].astype(int)
    inside = result.field
    assert maps[inside & (green < 40)].mean() > 0.9 and maps[inside & (green > 80)].mean() < 0.1


def test_masks_use_the_thresholds_of_the_card(tmp_path, photo):
    densities = []
    for threshold in (0.05, 0.5, 0.95):
        path = save_tiny_segmenter(tmp_path / str(threshold), thresholds=[threshold])
        result = Segmenter(path).segment(photo)
        expected = (result.maps["vessels"] >= threshold) & result.field
        assert np.array_equal(result.masks["vessels"], expected)
        densities.append(result.vessel_density())
    assert densities[0] > densities[1] > densities[2] > 0
    assert 0.02 < densities[1] < 0.3  # thin drawn vessels: a small share of the field


def test_any_input_size_runs_at_a_multiple_of_16_and_comes_back_at_the_cards_size(tmp_path):
    path = save_tiny_segmenter(tmp_path, input_size=72)
    segmenter = Segmenter(path)
    assert segmenter.size == 64
    result = segmenter.segment(draw_fundus(128, seed=1))
    assert result.maps["vessels"].shape == result.view.shape[:2] == result.field.shape == (72, 72)


def test_overlay_paints_masked_pixels_only(segmentation_models, photo):
    result = Segmenter(segmentation_models["vessels"]).segment(photo)
    mask = result.masks["vessels"]
    overlay = result.overlay(alpha=1.0)
    assert overlay.shape == result.view.shape and overlay.dtype == np.uint8
    assert np.array_equal(overlay[~mask], result.view[~mask])
    assert (overlay[mask] == CLASS_COLOURS["vessels"]).all()


def test_lesion_maps_one_per_class_and_no_vessel_density(segmentation_models, photo):
    segmenter = Segmenter(segmentation_models["lesions"])
    assert segmenter.synthetic
    result = segmenter.segment(photo)
    assert list(result.maps) == list(LESION_CLASSES) == list(result.masks)
    assert result.vessel_density() is None and result.model["synthetic"] is True
    assert set(result.areas()) == set(LESION_CLASSES)


def test_a_card_with_ignore_rim_leaves_the_fields_outer_rim_unmarked(tmp_path, photo):
    from retinascreen.data.rim import field_rim

    whole = Segmenter(save_tiny_segmenter(tmp_path / "whole", "lesions", LESION_CLASSES))
    inner = Segmenter(
        save_tiny_segmenter(
            tmp_path / "inner", "lesions", LESION_CLASSES, extra={"ignore_rim": 0.1}
        )
    )
    a, b = whole.segment(photo), inner.segment(photo)
    assert np.array_equal(a.field, b.field)  # areas stay shares of the whole field
    rim = field_rim(a.field, 0.1)
    assert rim.any() and a.masks["hard_exudate"][rim].any()  # bright rim pixels marked ...
    for name in LESION_CLASSES:  # ... but not with the rim left out, the rest unchanged
        assert b.maps[name][rim].max() == 0.0 and not b.masks[name][rim].any()
        np.testing.assert_array_equal(b.maps[name][~rim], a.maps[name][~rim])
    assert b.areas()["hard_exudate"] < a.areas()["hard_exudate"]
    full = b.in_photo_frame()  # the photo-frame masks come from the same maps
    assert full.masks["hard_exudate"].sum() <= a.in_photo_frame().masks["hard_exudate"].sum()


def test_a_bad_ignore_rim_in_the_card_is_a_clear_error(tmp_path):
    path = save_tiny_segmenter(tmp_path, extra={"ignore_rim": 0.9})
    with pytest.raises(ModelError, match="ignore_rim"):
        Segmenter(path)


def test_onnx_model_gives_the_maps_of_its_keras_twin(tmp_path, photo):
    keras_path = save_tiny_segmenter(tmp_path, onnx=True)
    onnx_path = keras_path.with_suffix(".onnx")
    from_onnx = Segmenter(onnx_path)
    assert from_onnx.engine == "onnx"
    np.testing.assert_allclose(
        from_onnx.segment(photo).maps["vessels"],
        Segmenter(keras_path).segment(photo).maps["vessels"],
        atol=1e-4,
    )


def test_clear_errors_for_a_grading_model_a_missing_file_and_a_bad_photo(
    web_model_path, segmentation_models, tmp_path
):
    with pytest.raises(ModelError, match="not a segmentation model"):
        Segmenter(web_model_path)
    with pytest.raises(ModelError, match="not found"):
        Segmenter(tmp_path / "nope.keras")
    with pytest.raises(ModelError, match="choose one of"):
        Segmenter(None, "arteries")
    (tmp_path / "notes.png").write_text("not a photo")
    with pytest.raises(NotAnImageError):
        Segmenter(segmentation_models["vessels"]).segment(tmp_path / "notes.png")


def test_exported_from_the_package():
    import retinascreen

    assert retinascreen.Segmenter is Segmenter


def test_the_grading_predictor_refuses_a_segmentation_model(segmentation_models):
    from retinascreen.serving.predictor import Predictor

    with pytest.raises(ModelError, match="segmentation model, not a grading model.*segment"):
        Predictor(segmentation_models["vessels"])


def test_export_command_writes_an_onnx_segmenter_with_the_same_maps(tmp_path, photo):
    from retinascreen.errors import ConfigError
    from retinascreen.serving.export import export_model

    keras_path = save_tiny_segmenter(tmp_path)
    out = tmp_path / "exported.onnx"
    report = export_model(keras_path, out)
    assert report.precision == "fp32" and report.max_abs_diff < 1e-4
    exported = Segmenter(out)
    assert exported.engine == "onnx" and exported.classes == ("vessels",)
    np.testing.assert_allclose(
        exported.segment(photo).maps["vessels"],
        Segmenter(keras_path).segment(photo).maps["vessels"],
        atol=1e-4,
    )
    with pytest.raises(ConfigError, match="segmentation model: export it as fp32"):
        export_model(keras_path, tmp_path / "int8.onnx", int8=True, calibration=tmp_path)


def test_the_bundled_segmenters_run_on_onnx_runtime():
    from retinascreen.serving.segmenter import bundled_path

    for what in ("vessels", "lesions", "disc"):
        path = bundled_path(what)
        assert path.suffix == ".onnx", path
        assert Segmenter(what=what).engine == "onnx"


def test_flip_averaging_is_the_mean_of_the_maps_of_a_batch_and_of_its_mirror():
    from retinascreen.models.engines import flip_averaged

    def left_half(batch: np.ndarray) -> np.ndarray:  # marks the left half, whatever it shows
        out = np.zeros((*batch.shape[:3], 1), np.float32)
        out[:, :, : batch.shape[2] // 2] = 1.0
        return out

    x = np.random.default_rng(0).uniform(0, 255, (2, 4, 6, 3)).astype(np.float32)
    np.testing.assert_array_equal(flip_averaged(left_half, x), np.full((2, 4, 6, 1), 0.5))
    np.testing.assert_allclose(flip_averaged(lambda b: b, x), x)  # a mirror-fair model: unchanged


def test_a_card_with_flip_average_serves_the_mean_of_the_photo_and_its_mirror(tmp_path, photo):
    from retinascreen.models.engines import flip_averaged

    plain_path, model = left_neighbour_segmenter(tmp_path / "plain")
    flip_path, _ = left_neighbour_segmenter(tmp_path / "flip", flip_average=True)
    plain, both = Segmenter(plain_path), Segmenter(flip_path)
    assert both.flip_average and not plain.flip_average
    a, b = plain.segment(photo), both.segment(photo)
    crop = np.asarray(crop_fundus(photo, 64), np.float32)[None]
    expected = flip_averaged(lambda x: np.asarray(model(x)), crop)[0]
    for i, name in enumerate(LESION_CLASSES):
        np.testing.assert_allclose(b.maps[name], expected[..., i] * b.field, atol=1e-5)
    assert not np.allclose(a.maps["hard_exudate"], b.maps["hard_exudate"], atol=1e-3)
    # A user who wants speed over the card's averaging gets the one-pass maps.
    one = Segmenter(flip_path, flip_average=False)
    assert not one.flip_average
    np.testing.assert_array_equal(one.segment(photo).maps["hard_exudate"], a.maps["hard_exudate"])
