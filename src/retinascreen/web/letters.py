"""A visit's PDFs (reportlab, like the screening report): the one-page patient letter in plain
language, and the clinical report with both eyes' photos, heat maps and the grader's decision."""

from __future__ import annotations

import io
from datetime import date

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
from reportlab.platypus.flowables import Flowable

from retinascreen import __version__
from retinascreen.grading import LABELS
from retinascreen.web.models import Screening
from retinascreen.web.outcome import EyeOutcome, VisitOutcome
from retinascreen.web.pdf_text import SANS, SANS_BOLD, markup
from retinascreen.web.policy import Policy
from retinascreen.web.report import report_image, unicode_styles, warning_text
from retinascreen.web.storage import PhotoStore
from retinascreen.web.visit_models import Visit
from retinascreen.web.visit_service import FIELD_NAMES, eyes_photos


def _doc(buffer: io.BytesIO, title: str) -> SimpleDocTemplate:
    return SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=20 * mm,
        rightMargin=20 * mm,
        topMargin=18 * mm,
        bottomMargin=16 * mm,
        title=title,
        author="retinascreen",
        pageCompression=0,
    )


def add_months(day: date, months: int) -> date:
    """``day`` plus ``months`` calendar months (the 31st becomes the month's last day)."""
    import calendar

    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def next_step(outcome: VisitOutcome, visit: Visit) -> str:
    """What the patient does next, in plain words."""
    rule = outcome.rule
    if rule.action == "rescreen" and rule.months:
        when = add_months(visit.visit_date, rule.months)
        return (
            f"Please come back for your next eye screening in {rule.months} months, "
            f"around {when:%B %Y}. We will send you an invitation."
        )
    if rule.action == "retake":
        return (
            "Please come back so that we can take new photographs as soon as possible. "
            "Call the screening clinic to book; it takes about 20 minutes."
        )
    urgency = {
        "urgent": "urgently: the eye clinic will contact you within days",
        "soon": "soon: the eye clinic will contact you within a few weeks",
    }.get(rule.urgency, "to the eye clinic: you will receive an appointment letter")
    return f"We are referring you {urgency}. Keep your appointment even if your sight seems fine."


def _eye_sentence(eye: EyeOutcome) -> str:
    """The eye's rule in plain words, and the retake when one is needed beside a referral."""
    text = eye.rule.letter
    if eye.retake and eye.rule.action != "retake":
        text += (
            " Some photographs of this eye were not clear enough to read: we need to take "
            "them again."
        )
    return text


def patient_letter(visit: Visit, outcome: VisitOutcome, policy: Policy) -> bytes:
    """The one-page plain-language letter to the patient."""
    styles = unicode_styles()
    body = ParagraphStyle("letter", parent=styles["BodyText"], fontSize=11, leading=15)
    head = ParagraphStyle("letter-head", parent=styles["Heading2"], spaceBefore=8)
    buffer = io.BytesIO()
    story: list[Flowable] = [
        Paragraph("Your diabetic eye screening result", styles["Title"]),
        Paragraph(
            markup(
                f"Screening number {visit.pseudonym or '-'} · visit of {visit.visit_date:%d %B %Y}"
                + (f" · {visit.site}" if visit.site else "")
            ),
            body,
        ),
        Spacer(1, 6 * mm),
        Paragraph(
            "Thank you for coming to your diabetic eye screening. We took photographs of the "
            "back of your eyes (the retina) to look for changes that diabetes can cause.",
            body,
        ),
    ]
    for eye in outcome.eyes:
        if eye.eye not in ("right", "left"):
            continue
        story.append(Paragraph(f"Your {eye.eye} eye", head))
        story.append(Paragraph(markup(_eye_sentence(eye)), body))
    story += [
        Paragraph("What happens next", head),
        Paragraph(markup(next_step(outcome, visit)), body),
        Spacer(1, 4 * mm),
        Paragraph(
            "Screening does not replace an eye test at an optician. If your sight gets worse "
            "or changes suddenly, contact your doctor or an eye casualty department at once, "
            "even before your next appointment.",
            body,
        ),
    ]
    if any(p.synthetic for p in visit.photos):
        story += [Spacer(1, 4 * mm), Paragraph(markup(warning_text()) + ".", body)]
    _doc(buffer, "Your eye screening result").build(story)
    return buffer.getvalue()


def _photo_cell(photo: Screening, store: PhotoStore, side: float, small: ParagraphStyle) -> Table:
    cells: list[Flowable] = [
        report_image(store.path(photo.photo_name), side) or Paragraph("photo unavailable", small)
    ]
    if photo.heatmap_name:
        cells.append(report_image(store.path(photo.heatmap_name), side) or Paragraph("", small))
    verdict = f"grade {photo.grade} ({LABELS[photo.grade]})" if photo.gradable else "ungradable"
    caption = f"#{photo.id} {FIELD_NAMES.get(photo.field or '', 'photo')}: {verdict}"
    table = Table([cells, [Paragraph(markup(caption), small)]])
    table.setStyle(TableStyle([("SPAN", (0, 1), (-1, 1)), ("VALIGN", (0, 0), (-1, -1), "TOP")]))
    return table


def clinical_report(visit: Visit, outcome: VisitOutcome, store: PhotoStore, *, user: str) -> bytes:
    """The clinical PDF of a visit: outcome and rule, each eye's machine and grader findings,
    and every photo with its heat map."""
    styles = unicode_styles()
    body = styles["BodyText"]
    small = ParagraphStyle("small", parent=body, fontSize=8, leading=10)
    buffer = io.BytesIO()
    story: list[Flowable] = [
        Paragraph("Diabetic eye screening: visit report", styles["Title"]),
        Paragraph(
            markup(
                f"Patient {visit.pseudonym or 'not recorded'} · {visit.visit_date:%Y-%m-%d} · "
                f"site {visit.site or 'not recorded'} · visit {visit.public_id} · printed by {user}"
            ),
            small,
        ),
        Spacer(1, 4 * mm),
        Paragraph(markup(f"Outcome: {outcome.rule.text}"), styles["Heading2"]),
        Paragraph(markup(f"Decided by: {outcome.decided_by}. Policy: {outcome.policy}."), body),
        Spacer(1, 3 * mm),
    ]
    rows = [["Eye", "Machine", "Grader", "Final", "Rule"]]
    for eye in outcome.eyes:
        human = "—"
        if eye.human is not None:
            human = f"{_finding(eye.human.gradable, eye.human.grade, eye.human.maculopathy)} ({eye.human.grader})"
        rows.append(
            [
                eye.eye,
                _finding(eye.machine.gradable, eye.machine.grade, eye.machine.maculopathy),
                Paragraph(markup(human), small),
                _finding(eye.final.gradable, eye.final.grade, eye.final.maculopathy),
                Paragraph(markup(eye.rule.summary), small),
            ]
        )
    table = Table(rows, colWidths=[18 * mm, 36 * mm, 46 * mm, 36 * mm, 34 * mm])
    table.setStyle(
        TableStyle(
            [
                ("FONTNAME", (0, 0), (-1, -1), SANS),
                ("FONTNAME", (0, 0), (-1, 0), SANS_BOLD),
                ("FONTSIZE", (0, 0), (-1, -1), 9),
                ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.HexColor("#d9dee7")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    story += [table, Spacer(1, 3 * mm)]
    for eye in outcome.eyes:
        if eye.human is not None and eye.human.note:
            story.append(Paragraph(markup(f"Grader's note ({eye.eye}): {eye.human.note}"), small))
    for eye_name, photos in eyes_photos(visit).items():
        story.append(Paragraph(f"{eye_name.capitalize()} eye", styles["Heading4"]))
        if not photos:
            story.append(Paragraph("No photograph.", small))
        cells = [_photo_cell(p, store, 38 * mm, small) for p in photos]
        for start in range(0, len(cells), 2):
            story.append(Table([cells[start : start + 2]], colWidths=[85 * mm, 85 * mm]))
    if any(p.synthetic for p in visit.photos):
        story += [Spacer(1, 3 * mm), Paragraph(markup(warning_text()) + ".", small)]
    story.append(
        Paragraph(
            f"Generated by retinascreen {__version__}: decision support; the screening decision "
            "rests with the clinician and the grader.",
            small,
        )
    )
    _doc(buffer, f"Visit {visit.public_id}").build(story)
    return buffer.getvalue()


def _finding(gradable: bool, grade: int | None, maculopathy: bool) -> str:
    if not gradable or grade is None:
        return "ungradable"
    return f"grade {grade}" + (" + maculopathy" if maculopathy else "")
