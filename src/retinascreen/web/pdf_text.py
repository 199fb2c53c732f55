"""Any Unicode text, printable in a reportlab PDF: fonts that cover it, a name where none does.

DejaVu Sans (shipped with matplotlib, embedded as a subset) covers Latin with every accent,
combining marks, Greek and Cyrillic; runs of Chinese, Japanese and Korean use reportlab's
built-in CID fonts; a character no font covers (an emoji, say) is written as its Unicode name
in brackets, ``[GRINNING FACE]``, never as a black box.
"""

from __future__ import annotations

import importlib.util
import threading
import unicodedata
from pathlib import Path
from xml.sax.saxutils import escape

SANS = "DejaVuSans"
SANS_BOLD = "DejaVuSans-Bold"
SANS_ITALIC = "DejaVuSans-Oblique"
SANS_BOLD_ITALIC = "DejaVuSans-BoldOblique"
CJK_FONTS = {"zh": "STSong-Light", "ja": "HeiseiMin-W3", "ko": "HYSMyeongJo-Medium"}

_lock = threading.Lock()
_covered: frozenset[int] = frozenset()


def dejavu_folder() -> Path:
    """matplotlib's bundled TrueType folder (found without importing matplotlib)."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or spec.origin is None:  # pragma: no cover - matplotlib is a dependency
        raise RuntimeError("matplotlib is not installed; the PDF report needs its DejaVu fonts")
    return Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf"


def register_fonts() -> None:
    """Register DejaVu Sans (4 faces, one family) and the CJK CID fonts with reportlab, once."""
    global _covered
    with _lock:
        if _covered:
            return
        from reportlab.lib.fonts import addMapping
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.cidfonts import UnicodeCIDFont
        from reportlab.pdfbase.ttfonts import TTFont

        folder = dejavu_folder()
        faces = {
            SANS: "",
            SANS_BOLD: "-Bold",
            SANS_ITALIC: "-Oblique",
            SANS_BOLD_ITALIC: "-BoldOblique",
        }
        fonts = {
            name: TTFont(name, str(folder / f"DejaVuSans{tail}.ttf"))
            for name, tail in faces.items()
        }
        for font in fonts.values():
            pdfmetrics.registerFont(font)
        for bold, italic, name in (
            (0, 0, SANS),
            (1, 0, SANS_BOLD),
            (0, 1, SANS_ITALIC),
            (1, 1, SANS_BOLD_ITALIC),
        ):
            addMapping(SANS, bold, italic, name)
        for name in CJK_FONTS.values():
            pdfmetrics.registerFont(UnicodeCIDFont(name))
        _covered = frozenset(fonts[SANS].face.charToGlyph)


def _cjk_language(char: str) -> str | None:
    """zh/ja/ko for a character the CJK fonts draw (BMP only: they are UCS-2 encoded)."""
    code = ord(char)
    if 0x3040 <= code <= 0x30FF or 0x31F0 <= code <= 0x31FF or 0xFF66 <= code <= 0xFF9F:
        return "ja"  # kana
    if 0x1100 <= code <= 0x11FF or 0x3130 <= code <= 0x318F or 0xAC00 <= code <= 0xD7AF:
        return "ko"  # hangul
    if (
        0x3000 <= code <= 0x303F  # CJK punctuation
        or 0x3400 <= code <= 0x4DBF
        or 0x4E00 <= code <= 0x9FFF  # ideographs
        or 0xF900 <= code <= 0xFAFF
        or 0xFF00 <= code <= 0xFF65  # full-width forms
    ):
        return "zh"
    return None


def _name(char: str) -> str:
    return "[" + unicodedata.name(char, f"U+{ord(char):04X}") + "]"


def markup(text: object) -> str:
    """``text`` as reportlab Paragraph markup: escaped, NFC-composed, fonts chosen per run.

    Runs of Chinese/Japanese/Korean get a ``<font>`` tag (Japanese when the run has kana,
    Korean when it has hangul, else Chinese); characters no font covers become their name.
    """
    register_fonts()
    composed = unicodedata.normalize("NFC", str(text))
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            languages = {_cjk_language(c) for c in run}
            font = CJK_FONTS["ja" if "ja" in languages else "ko" if "ko" in languages else "zh"]
            out.append(f'<font name="{font}">{escape("".join(run))}</font>')
            run.clear()

    for char in composed:
        if ord(char) in _covered and unicodedata.category(char) not in ("Cc", "Cs", "Co"):
            flush()
            out.append(escape(char))
        elif _cjk_language(char):
            run.append(char)
        else:
            flush()
            out.append(escape(_name(char)))
    flush()
    return "".join(out)
