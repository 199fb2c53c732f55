"""The published DR data-set layouts, defined once: read by ``data.datasets``, written by
``synthetic.layouts``, offered by the commands' ``--format`` choices.

Each :class:`DatasetFormat` names its label CSV (relative to the data-set root), the columns that
hold the image id and the grade, the folder of its images and the suffix an image id gets there.
``folders`` has no CSV: the name of an image's folder (``0..4`` or :data:`KAGGLE_FOLDER_NAMES`)
is its grade. IDRiD publishes two splits with a label file each: ``idrid`` reads the training
set, ``idrid-test`` the testing set and ``idrid-all`` both (its ``parts``). See docs/design.md
"Data-set layouts".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DatasetFormat:
    """One layout: where its labels and images are and what they are called.

    ``image_suffix`` is what the writer appends to an image id (empty when the id carries its
    own extension) and what the reader names a missing image with; ``read_suffixes`` are the
    extensions the reader tries after the id. ``dme_column`` and ``gradable_column`` are the
    optional macular-oedema and gradability columns, ``csv_aliases`` other names the reader
    accepts for the label CSV. ``split`` is the split the data set's publisher gave its images
    (IDRiD's testing set: ``test``); ``parts`` names the formats a combined format reads together.
    """

    name: str
    labels_csv: Path | None
    id_column: str | None
    grade_column: str | None
    image_folder: Path | None
    image_suffix: str
    read_suffixes: tuple[str, ...] = ()
    dme_column: str | None = None
    gradable_column: str | None = None
    csv_aliases: tuple[str, ...] = ()
    split: str | None = None
    parts: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        """The label CSV's own columns, in the order the data set publishes them."""
        named = (self.id_column, self.grade_column, self.dme_column, self.gradable_column)
        return tuple(c for c in named if c)

    @property
    def csv_names(self) -> tuple[str, ...]:
        """File names the reader looks for in the data-set root, the published one first."""
        return ((self.labels_csv.name,) if self.labels_csv else ()) + self.csv_aliases

    @property
    def layout(self) -> str:
        """One line for error messages, e.g. ``train.csv (id_code,diagnosis) + train_images/...``."""
        if self.parts:
            return " and ".join(DATASET_FORMATS[part].layout for part in self.parts)
        if self.labels_csv is None or self.image_folder is None:
            return "one sub-folder per grade"
        read = (self.id_column, self.grade_column, self.gradable_column)
        columns = ",".join(c for c in read if c)
        image = f"{self.image_folder.as_posix()}/<{self.id_column}>{self.image_suffix}"
        return f"{self.labels_csv.as_posix()} ({columns}) + {image}"


# Optional columns that synthetic data adds and the reader keeps (patient grouping, fixed split).
PATIENT_COLUMN = "patient_id"
EYE_COLUMN = "eye"
SPLIT_COLUMN = "split"

# Folder names of the "folders" layout as Kaggle's Gaussian-filtered set spells them, by grade.
KAGGLE_FOLDER_NAMES: tuple[str, ...] = ("No_DR", "Mild", "Moderate", "Severe", "Proliferate_DR")

# Files that mark a data set written by retinascreen.synthetic (and name its generator).
SYNTHETIC_MANIFEST = "synthetic.json"  # retinascreen synth / write_dataset
BENCHMARK_MANIFEST = "manifest.json"  # write_benchmark

IDRID_ROOT = Path("B. Disease Grading")
IDRID_LABELS = IDRID_ROOT / "2. Groundtruths"
IDRID_IMAGES = IDRID_ROOT / "1. Original Images"

APTOS = DatasetFormat(
    name="aptos",
    labels_csv=Path("train.csv"),
    id_column="id_code",
    grade_column="diagnosis",
    image_folder=Path("train_images"),
    image_suffix=".png",
    read_suffixes=(".png", ".jpg", ".jpeg"),
)
EYEPACS = DatasetFormat(
    name="eyepacs",
    labels_csv=Path("trainLabels.csv"),
    id_column="image",
    grade_column="level",
    image_folder=Path("train"),
    image_suffix=".jpeg",
    read_suffixes=(".jpeg", ".jpg", ".png"),
    csv_aliases=("trainlabels.csv",),
)
MESSIDOR2 = DatasetFormat(
    name="messidor2",
    labels_csv=Path("messidor_data.csv"),
    id_column="image_id",
    grade_column="adjudicated_dr_grade",
    image_folder=Path("IMAGES"),
    image_suffix="",  # image_id includes its extension
    read_suffixes=(".png", ".jpg", ".JPG"),
    dme_column="adjudicated_dme",
    gradable_column="adjudicated_gradable",
)
IDRID = DatasetFormat(
    name="idrid",
    labels_csv=IDRID_LABELS / "a. IDRiD_Disease Grading_Training Labels.csv",
    id_column="Image name",
    grade_column="Retinopathy grade",
    image_folder=IDRID_IMAGES / "a. Training Set",
    image_suffix=".jpg",
    read_suffixes=(".jpg", ".jpeg", ".png", ".tif"),
    dme_column="Risk of macular edema ",  # sic: the published header ends with a space
)
IDRID_TEST = DatasetFormat(
    name="idrid-test",
    labels_csv=IDRID_LABELS / "b. IDRiD_Disease Grading_Testing Labels.csv",
    id_column=IDRID.id_column,
    grade_column=IDRID.grade_column,
    image_folder=IDRID_IMAGES / "b. Testing Set",
    image_suffix=IDRID.image_suffix,
    read_suffixes=IDRID.read_suffixes,
    dme_column=IDRID.dme_column,
    split="test",
)
IDRID_ALL = DatasetFormat(
    name="idrid-all",
    labels_csv=None,
    id_column=IDRID.id_column,
    grade_column=IDRID.grade_column,
    image_folder=None,
    image_suffix=IDRID.image_suffix,
    dme_column=IDRID.dme_column,
    parts=(IDRID.name, IDRID_TEST.name),
)
FOLDERS = DatasetFormat(
    name="folders",
    labels_csv=None,
    id_column=None,
    grade_column=None,
    image_folder=None,
    image_suffix=".png",
)

DATASET_FORMATS: dict[str, DatasetFormat] = {
    f.name: f for f in (APTOS, EYEPACS, MESSIDOR2, IDRID, IDRID_TEST, IDRID_ALL, FOLDERS)
}
FORMATS: tuple[str, ...] = tuple(DATASET_FORMATS)  # what --format reads
# What retinascreen synth writes (--layout): one per data set; for IDRiD its training set.
LAYOUTS: tuple[str, ...] = tuple(n for n, f in DATASET_FORMATS.items() if not (f.split or f.parts))
# One line per format for the commands' --help.
FORMAT_HELP = (
    "data-set layout: aptos, eyepacs, messidor2, folders; idrid is IDRiD's training set, "
    "idrid-test its testing set (all of it the test split), idrid-all both (the testing set is "
    "the test split, the training set is shared between train and val)"
)


__all__ = [
    "APTOS",
    "BENCHMARK_MANIFEST",
    "DATASET_FORMATS",
    "EYEPACS",
    "EYE_COLUMN",
    "FOLDERS",
    "FORMATS",
    "FORMAT_HELP",
    "IDRID",
    "IDRID_ALL",
    "IDRID_IMAGES",
    "IDRID_LABELS",
    "IDRID_ROOT",
    "IDRID_TEST",
    "KAGGLE_FOLDER_NAMES",
    "LAYOUTS",
    "MESSIDOR2",
    "PATIENT_COLUMN",
    "SPLIT_COLUMN",
    "SYNTHETIC_MANIFEST",
    "DatasetFormat",
]
