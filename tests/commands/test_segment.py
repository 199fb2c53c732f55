"""``retinascreen segment``: the files per photo, and bad input that never stops the rest."""

from __future__ import annotations

import numpy as np
import pytest

from retinascreen.cli import main
from retinascreen.data.images import load_image, save_image
from tests.helpers.drawing import draw_fundus
from tests.helpers.segmentation import LESION_CLASSES, left_neighbour_segmenter


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    for seed in (1, 2):
        save_image(folder / f"eye{seed}.png", draw_fundus(128, seed=seed))
    return folder


def test_vessel_maps_masks_and_overlays_per_photo(segmentation_models, photos, tmp_path, capsys):
    out = tmp_path / "maps"
    status = main(["segment", str(segmentation_models["vessels"]), str(photos), "--out", str(out)])
    assert status == 0
    assert "tiny-vessels" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [
        f"eye{seed}_vessels{kind}.png" for seed in (1, 2) for kind in ("", "_mask", "_overlay")
    ]
    probabilities = np.asarray(load_image(out / "eye1_vessels.png"))[:, :, 0]
    mask = np.asarray(load_image(out / "eye1_vessels_mask.png"))[:, :, 0]
    assert probabilities.shape == mask.shape == (128, 128)  # the photo's own frame
    assert set(np.unique(mask)) == {0, 255}
    # the mask is the map at the card's threshold (0.5)
    assert np.array_equal(mask == 255, probabilities >= 128)
    # vessels are marked where the photo's own green is dark (the map lies on the photo)
    green = draw_fundus(128, seed=1)[:, :, 1].astype(float)
    assert green[mask == 255].mean() < green[(probabilities > 0) & (mask == 0)].mean() - 10


def test_crop_frame_maps_on_request(segmentation_models, photos, tmp_path):
    out = tmp_path / "maps"
    model = str(segmentation_models["vessels"])
    assert main(["segment", model, str(photos), "--out", str(out), "--frame", "crop"]) == 0
    for kind in ("", "_mask", "_overlay"):
        assert load_image(out / f"eye1_vessels{kind}.png").shape[:2] == (64, 64)


def test_lesion_maps_per_type_and_the_synthetic_notice(
    segmentation_models, photos, tmp_path, capsys
):
    out = tmp_path / "maps"
    photo = photos / "eye1.png"
    status = main(["segment", str(segmentation_models["lesions"]), str(photo), "--out", str(out)])
    assert status == 0
    assert "synthetic photos only" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"eye1_lesions_{name}.png" for name in LESION_CLASSES] + ["eye1_lesions_overlay.png"]
    )


def test_bad_files_get_one_error_line_each_and_the_rest_is_written(
    segmentation_models, photos, tmp_path, capsys
):
    (photos / "notes.png").write_text("patient notes, not a photograph")
    out = tmp_path / "maps"
    status = main(
        [
            "segment",
            str(segmentation_models["vessels"]),
            str(photos / "notes.png"),
            str(tmp_path / "missing.jpg"),
            str(photos / "eye2.png"),
            "--out",
            str(out),
        ]
    )
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert status == 2
    assert len(errors) == 2 and "notes.png" in errors[0] and "missing.jpg" in errors[1]
    assert (out / "eye2_vessels_overlay.png").is_file()
    assert not any(p.name.startswith(("notes", "missing")) for p in out.iterdir())


def test_a_grading_model_is_refused_with_a_clear_error(web_model_path, photos, tmp_path, capsys):
    status = main(["segment", str(web_model_path), str(photos), "--out", str(tmp_path / "o")])
    assert status == 2
    assert "not a segmentation model" in capsys.readouterr().err


def test_one_pass_skips_the_cards_flip_averaging(photos, tmp_path):
    """A lesion card that averages each map with the mirror image's: ``--one-pass`` writes the
    maps of one pass, which for this not-mirror-fair model differ from the averaged ones."""
    flip_model, _ = left_neighbour_segmenter(tmp_path / "flip", flip_average=True)
    plain_model, _ = left_neighbour_segmenter(tmp_path / "plain")
    photo = str(photos / "eye1.png")
    maps = {}
    for name, model, extra in (
        ("averaged", flip_model, []),
        ("one pass", flip_model, ["--one-pass"]),
        ("plain", plain_model, []),
    ):
        out = tmp_path / name
        assert main(["segment", str(model), photo, "--out", str(out), *extra]) == 0
        maps[name] = np.asarray(load_image(out / "eye1_lesions_hard_exudate.png"))
    assert np.array_equal(maps["one pass"], maps["plain"])
    assert not np.array_equal(maps["averaged"], maps["plain"])
