"""One-page PDF report of a screening (reportlab): photo, heat map, vessel and lesion overlays,
grade, quality, model."""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import (
    Image,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)
from reportlab.platypus.flowables import Flowable

from retinascreen import __version__
from retinascreen.data.fundus import explain_reasons
from retinascreen.grading import LABELS
from retinascreen.result import SYNTHETIC_WARNING
from retinascreen.web.models import Screening, as_utc
from retinascreen.web.pdf_text import SANS, SANS_BOLD, markup, register_fonts
from retinascreen.web.storage import PhotoStore

GRADE_COLOURS = ("#2e7d4f", "#7b9a1e", "#c77700", "#c2410c", "#a3171d")


class _Bar(Flowable):
    """A horizontal probability bar."""

    def __init__(self, value: float, colour: str, width: float = 70 * mm, height: float = 3.2 * mm):
        super().__init__()
        self.value, self.colour, self.width, self.height = value, colour, width, height

    def draw(self) -> None:
        self.canv.setFillColor(colors.HexColor("#e6eaf0"))
        self.canv.rect(0, 0, self.width, self.height, stroke=0, fill=1)
        self.canv.setFillColor(colors.HexColor(self.colour))
        self.canv.rect(
            0, 0, self.width * max(0.0, min(1.0, self.value)), self.height, stroke=0, fill=1
        )


EMBED_MAX_SIDE = 1600
"""Longest side, in pixels, of a picture embedded in a report: over 500 dpi at the 80 mm it is
printed at. A 49-megapixel original made each report cost 9 s and 11 MB."""


def report_image(path: Path | None, max_side: float) -> Flowable | None:
    """The picture at ``path`` scaled to ``max_side`` on the page, turned upright by its EXIF
    orientation, and embedded at most :data:`EMBED_MAX_SIDE` pixels long (as JPEG if reduced)."""
    from PIL import Image as PILImage
    from PIL import ImageOps

    if path is None or not path.is_file():
        return None
    source: str | io.BytesIO = str(path)
    with PILImage.open(path) as pil:
        width, height = pil.size
        turned = pil.getexif().get(0x0112, 1) in range(2, 9)  # 1 = upright; 2-8 flip or turn
        large = max(width, height) > EMBED_MAX_SIDE
        if turned or large:
            if large and pil.format == "JPEG":  # libjpeg decodes at 1/2, 1/4 or 1/8 directly
                pil.draft("RGB", (EMBED_MAX_SIDE, EMBED_MAX_SIDE))
            picture = ImageOps.exif_transpose(pil) or pil
            picture.thumbnail((EMBED_MAX_SIDE, EMBED_MAX_SIDE))
            width, height = picture.size
            source = io.BytesIO()
            if large:
                picture.convert("RGB").save(source, format="JPEG", quality=90)
            else:
                picture.save(source, format="PNG")
            source.seek(0)
    scale = max_side / max(width, height)
    return Image(source, width=width * scale, height=height * scale)


def unicode_styles() -> dict[str, ParagraphStyle]:
    """reportlab's sample styles in DejaVu Sans (Helvetica has no glyphs beyond Latin-1)."""
    register_fonts()
    sample = getSampleStyleSheet()
    styles = {}
    for name in ("Title", "BodyText", "Heading2", "Heading4"):
        style = sample[name]
        bold = "Bold" in style.fontName
        styles[name] = ParagraphStyle(
            f"{name}-unicode", parent=style, fontName=SANS_BOLD if bold else SANS
        )
    return styles


def pictures(screening: Screening, store: PhotoStore, small: ParagraphStyle) -> list[Flowable]:
    """The photograph and heat map, with the vessel and lesion overlays beside them if any,
    and what the lesion model learned from (its card) under them."""
    from retinascreen.web.segmentation import lesion_note

    named = [
        (screening.photo_name, "Photograph", "photo unavailable"),
        (
            screening.heatmap_name,
            "Heat map (Grad-CAM): where the model found evidence of referable DR",
            "no heat map",
        ),
    ]
    segmentation = screening.result.get("segmentation") or {}
    density = segmentation.get("vessel_density")
    if screening.vessels_name:
        caption = "Vessel map" + (
            f": density {density:.1%} of the field" if density is not None else ""
        )
        named.append((screening.vessels_name, caption, ""))
    note = lesion_note(segmentation) if screening.lesions_name else None
    if screening.lesions_name:
        named.append((screening.lesions_name, "Lesion map", ""))
    width = 176 * mm / len(named)
    side = min(80 * mm, width - 6 * mm)
    cells = [
        (report_image(store.path(name), side) if name else None) or Paragraph(missing, small)
        for name, _, missing in named
    ]
    captions = [Paragraph(markup(caption), small) for _, caption, _ in named]
    table = Table([cells, captions], colWidths=[width] * len(named))
    table.setStyle(
        TableStyle([("ALIGN", (0, 0), (-1, -1), "CENTER"), ("VALIGN", (0, 0), (-1, -1), "MIDDLE")])
    )
    return [table] + (
        [Spacer(1, 2 * mm), Paragraph(f"<b>{markup(note)}</b>", small)] if note else []
    )


def macula_lines(screening: Screening, prediction: Any) -> list[str]:
    """Maculopathy verdict, the eye the photo shows and a disagreement with the entered eye."""
    from retinascreen.serving.anatomy import laterality_note

    lines = []
    if prediction.maculopathy is not None and prediction.maculopathy_rule:
        verdict = "Maculopathy suspected" if prediction.maculopathy else "No maculopathy found"
        lines.append(f"{verdict} ({prediction.maculopathy_rule}; drawn on the lesion map).")
    anatomy = prediction.anatomy or {}
    if anatomy.get("laterality"):
        lines.append(
            f"The photo looks like a {anatomy['laterality']} eye (confidence "
            f"{float(anatomy.get('confidence') or 0):.0%})."
        )
    note = laterality_note(screening.eye, anatomy)
    if note:
        lines.append(note)
    return lines


def warning_text() -> str:
    """The synthetic-model warning as a sentence (it starts with a capital)."""
    return SYNTHETIC_WARNING[:1].upper() + SYNTHETIC_WARNING[1:]


def build_report(screening: Screening, store: PhotoStore, *, user: str) -> bytes:
    """The PDF bytes of ``screening``'s report."""
    prediction = screening.prediction
    styles = unicode_styles()
    body = styles["BodyText"]
    small = ParagraphStyle(
        "small", parent=body, fontSize=8, leading=10, textColor=colors.HexColor("#4f5b6d")
    )
    warning = ParagraphStyle(
        "warning",
        parent=body,
        textColor=colors.HexColor("#7a4a00"),
        backColor=colors.HexColor("#fff3d6"),
        borderColor=colors.HexColor("#d69a00"),
        borderWidth=1,
        borderPadding=6,
        fontName=SANS_BOLD,
        spaceBefore=6,
        spaceAfter=12,
    )
    verdict = ParagraphStyle("verdict", parent=styles["Heading2"], spaceAfter=2)

    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=16 * mm,
        rightMargin=16 * mm,
        topMargin=14 * mm,
        bottomMargin=14 * mm,
        title=f"Screening {screening.id}",
        author="retinascreen",
        pageCompression=0,
        subject="Diabetic retinopathy screening report",
    )
    story: list[Flowable] = [
        Paragraph("Diabetic retinopathy screening report", styles["Title"]),
    ]
    if screening.synthetic:
        story += [Spacer(1, 3 * mm), Paragraph(markup(warning_text()), warning)]
    created = as_utc(screening.created)
    cell = ParagraphStyle("cell", parent=body, fontSize=9, leading=11)

    def value(text: str) -> Paragraph:
        return Paragraph(markup(text), cell)

    meta = [
        ["Screening", f"#{screening.id}", "Date (UTC)", created.strftime("%Y-%m-%d %H:%M")],
        [
            "Patient id",
            value(screening.patient_id or "not recorded"),
            "Eye",
            value(screening.eye or "not recorded"),
        ],
        ["Screened by", value(user), "", ""],
    ]
    meta_table = Table(meta, colWidths=[28 * mm, 62 * mm, 28 * mm, 60 * mm])
    meta_table.setStyle(
        TableStyle(
            [
                ("FONTNAME", (0, 0), (-1, -1), SANS),
                ("FONTNAME", (0, 0), (0, -1), SANS_BOLD),
                ("FONTNAME", (2, 0), (2, -1), SANS_BOLD),
                ("FONTSIZE", (0, 0), (-1, -1), 9),
                ("TEXTCOLOR", (0, 0), (-1, -1), colors.HexColor("#18212f")),
                ("LINEBELOW", (0, -1), (-1, -1), 0.5, colors.HexColor("#d9dee7")),
            ]
        )
    )
    story += [meta_table, Spacer(1, 6 * mm)]

    quality = prediction.quality
    reasons = ", ".join(quality.reasons)
    if not screening.gradable:
        story.append(Paragraph("Ungradable — retake the photograph", verdict))
        story.append(Paragraph(f"Quality problems: {markup(reasons or 'unspecified')}.", body))
        for advice in explain_reasons(quality.reasons):
            story.append(Paragraph(markup(advice), body))
    else:
        story.append(Paragraph(f"ICDR grade {screening.grade}: {LABELS[screening.grade]}", verdict))
        referral = (
            "<b>Referable</b> diabetic retinopathy: refer to an ophthalmologist."
            if screening.referable
            else "<b>Not referable</b>: rescreen at the usual interval."
        )
        story.append(Paragraph(referral, body))
        story.append(
            Paragraph(
                f"Probability of referable DR (grade &ge; 2): {screening.referable_probability:.0%}",
                body,
            )
        )
        if prediction.referral_note:
            story.append(Paragraph(markup(prediction.referral_note), body))
        story += [Paragraph(markup(line), body) for line in macula_lines(screening, prediction)]
    story.append(Spacer(1, 4 * mm))

    rows = [["Grade", "Label", "Probability", ""]]
    for grade, probability in enumerate(prediction.probabilities):
        rows.append(
            [
                str(grade),
                LABELS[grade],
                _Bar(float(probability), GRADE_COLOURS[grade]),
                f"{float(probability):.1%}",
            ]
        )
    probs = Table(rows, colWidths=[14 * mm, 40 * mm, 74 * mm, 20 * mm])
    probs.setStyle(
        TableStyle(
            [
                ("FONTNAME", (0, 0), (-1, -1), SANS),
                ("FONTNAME", (0, 0), (-1, 0), SANS_BOLD),
                ("FONTSIZE", (0, 0), (-1, -1), 9),
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                ("ALIGN", (3, 1), (3, -1), "RIGHT"),
                ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.HexColor("#d9dee7")),
            ]
        )
    )
    story += [probs, Spacer(1, 4 * mm)]
    story.append(
        Paragraph(
            f"<b>Image quality:</b> {'gradable' if screening.gradable else 'ungradable'}, "
            f"score {quality.score:.2f}{' (' + markup(reasons) + ')' if reasons else ''}",
            body,
        )
    )
    story.append(Spacer(1, 4 * mm))

    story += [*pictures(screening, store, small), Spacer(1, 5 * mm)]

    model = prediction.model
    card = screening.model_card
    story.append(Paragraph("Model card", styles["Heading4"]))
    lines = [
        f"{markup(model.name)} version {markup(model.version)}",
        f"sha256 {markup(model.sha256)}",
    ]
    if card.get("backbone"):
        lines.append(
            f"Architecture: {markup(str(card['backbone']))} backbone, "
            f"{markup(str(card.get('head', '?')))} head, {card.get('input_size', '?')} px input"
        )
    if card.get("training_data"):
        lines.append(f"Training data: {markup(str(card['training_data']))}")
    metrics = card.get("metrics") or {}
    if metrics:
        lines.append("Validation: " + ", ".join(f"{k} {float(v):.3f}" for k, v in metrics.items()))
    if card.get("calibration"):
        lines.append(markup(str(card["calibration"])))
    if card.get("intended_use"):
        lines.append(f"Intended use: {markup(str(card['intended_use']))}")
    if screening.synthetic:
        lines.append(markup(warning_text()) + ".")
    story.append(Paragraph("<br/>".join(lines), small))
    story.append(Spacer(1, 4 * mm))
    story.append(
        Paragraph(
            f"Generated by retinascreen {__version__}. This is a decision-support result; the "
            "screening decision rests with the clinician.",
            small,
        )
    )
    doc.build(story)
    return buffer.getvalue()


CACHE_ENTRIES = 32
CACHE_BYTES = 64 * 1024 * 1024
RENDERS_AT_ONCE = 2


class ReportCache:
    """The PDFs of recent reports, in memory per worker (nothing more on disk to keep private).

    A screening never changes after it is stored, so its report is rendered once; the key also
    holds the photo's generated file name (a reused id can never answer another screening's
    PDF), the viewer's name and the product version. At most :data:`RENDERS_AT_ONCE` reports
    render at a time, so a burst of requests cannot stack up CPU and memory.
    """

    def __init__(self, entries: int = CACHE_ENTRIES, max_bytes: int = CACHE_BYTES) -> None:
        self.entries, self.max_bytes = entries, max_bytes
        self._pdfs: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._renders = threading.BoundedSemaphore(RENDERS_AT_ONCE)

    def report(self, screening: Screening, store: PhotoStore, *, user: str) -> bytes:
        """``build_report(screening, store, user=user)``, rendered at most once."""
        key = (screening.id, screening.photo_name, screening.user_id, user, __version__)
        with self._lock:
            if key in self._pdfs:
                self._pdfs.move_to_end(key)
                return self._pdfs[key]
        with self._renders:
            with self._lock:  # another request may have rendered it while this one waited
                if key in self._pdfs:
                    return self._pdfs[key]
            pdf = build_report(screening, store, user=user)
        with self._lock:
            self._pdfs[key] = pdf
            while len(self._pdfs) > self.entries or (
                len(self._pdfs) > 1 and sum(map(len, self._pdfs.values())) > self.max_bytes
            ):
                self._pdfs.popitem(last=False)
        return pdf
