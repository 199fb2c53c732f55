"""``retinascreen segment`` on a real DRIVE test photo: the map lies on the photo itself.

A user lays ``<stem>_vessels.png`` over the photo they segmented, so the map must have the
photo's size and position; measured in that frame against DRIVE's manual annotation it must
score as it does in the model's own crop. Skipped without ``../shared/data`` (fails in CI).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from retinascreen.cli import main
from retinascreen.data.images import load_image
from tests.helpers import photo_sets as sets


def test_vessel_map_of_a_drive_photo_is_in_the_photos_frame_and_scores_as_in_the_crop(
    tmp_path,
):
    sets.require_shared_data()
    from retinascreen.data.drive import crop_with_masks, read_drive
    from retinascreen.serving.segmenter import Segmenter

    photo = read_drive(sets.SHARED_DATA / "drive", "test")[0]
    source = sets.SHARED_DATA / "drive" / "test" / "images"
    path = next(p for p in sorted(source.iterdir()) if p.stem == photo.name)
    out = tmp_path / "maps"
    assert main(["segment", str(path), "--out", str(out)]) == 0  # the bundled vessel model

    probabilities = np.asarray(load_image(out / f"{path.stem}_vessels.png"))[:, :, 0]
    assert probabilities.shape == (584, 565)  # DRIVE's photo: 565 x 584 (width x height)
    assert (
        not probabilities[~photo.field].any() or (probabilities[~photo.field] > 0).mean() < 0.02
    )  # nothing outside the field (DRIVE's own mask is a little tighter)
    in_photo = roc_auc_score(photo.vessels[photo.field], probabilities[photo.field])

    segmenter = Segmenter()
    crop = segmenter.segment(photo.image)
    _, cut = crop_with_masks(
        photo.image, {"v": photo.vessels, "f": photo.field}, segmenter.input_size
    )
    in_crop = roc_auc_score(cut["v"][cut["f"]], crop.maps["vessels"][cut["f"]])
    assert in_crop > 0.95
    assert abs(in_photo - in_crop) <= 0.01, (in_photo, in_crop)
