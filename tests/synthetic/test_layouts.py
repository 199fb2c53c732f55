"""Each data-set layout's label writer sits in one table beside its reader's format."""

from __future__ import annotations

import pytest

from retinascreen.data.formats import DATASET_FORMATS, LAYOUTS
from retinascreen.errors import ConfigError
from retinascreen.synthetic import layouts


def test_every_layout_has_its_writer_and_a_labels_file_where_its_reader_wants_one():
    assert set(layouts.LABEL_WRITERS) == set(LAYOUTS)
    for name in LAYOUTS:
        has_writer = layouts.LABEL_WRITERS[name] is not None
        assert has_writer == (DATASET_FORMATS[name].labels_csv is not None), name


def test_a_layout_without_a_writer_is_an_error_not_a_set_without_labels(tmp_path):
    with pytest.raises(ConfigError, match="no label writer"):
        layouts._write_labels(tmp_path, "new-layout", [], [], with_ungradable=False)
    assert not any(tmp_path.iterdir())
