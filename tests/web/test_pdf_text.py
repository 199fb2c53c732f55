"""Font choice per run of characters for the PDF report (no app needed)."""

from __future__ import annotations

from retinascreen.web.pdf_text import markup


def test_latin_greek_cyrillic_stay_in_dejavu_and_markup_is_escaped():
    assert markup("Zoë Σοφία Жанна <b>&") == "Zoë Σοφία Жанна &lt;b&gt;&amp;"


def test_combining_marks_are_composed():
    assert markup("e\u0301") == "é"


def test_cjk_runs_get_a_font_by_script():
    assert markup("山田") == '<font name="STSong-Light">山田</font>'
    assert markup("やまだ 山田") == (
        '<font name="HeiseiMin-W3">やまだ</font> <font name="STSong-Light">山田</font>'
    )
    assert markup("김민준") == '<font name="HYSMyeongJo-Medium">김민준</font>'


def test_characters_no_font_has_are_named_never_boxed():
    assert markup("🧬 क") == "[DNA DOUBLE HELIX] [DEVANAGARI LETTER KA]"
    assert markup("\x07") == "[U+0007]"
