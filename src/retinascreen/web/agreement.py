"""Agreement and workload: outcomes, ungradable rate, the queue, and machine-vs-grader agreement
on reviewed eyes (quadratic weighted kappa, referable sensitivity and specificity with Wilson
95 % intervals, the grader taken as the reference), overall, per site and per month."""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from retinascreen.data.csvcells import SafeDictWriter
from retinascreen.web.models import as_utc, utcnow
from retinascreen.web.visit_models import ReviewItem, Visit
from retinascreen.web.visit_service import EAGER, latest_reviews, outcome_of


@dataclass
class Pair:
    """A reviewed eye: the machine's finding and the grader's."""

    machine_gradable: bool
    machine_grade: int | None
    grader_gradable: bool
    grader_grade: int | None


@dataclass
class Group:
    kind: str
    """``all``, ``site`` or ``month``."""
    value: str = ""
    """The site's name or the month (``YYYY-MM``); empty for ``all``."""
    visits: int = 0
    eyes: int = 0
    ungradable_eyes: int = 0
    retake_eyes: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    pairs: list[Pair] = field(default_factory=list)
    queue_open: int = 0
    queue_oldest_days: float | None = None

    def row(self) -> dict[str, Any]:
        """The figures of this group (the CSV row and the page's table row)."""
        both = [p for p in self.pairs if p.machine_gradable and p.grader_gradable]
        machine = [int(p.machine_grade or 0) for p in both]
        human = [int(p.grader_grade or 0) for p in both]
        kappa = weighted_kappa(machine, human)
        refer_m = [g >= 2 for g in machine]
        refer_h = [g >= 2 for g in human]
        tp = sum(m and h for m, h in zip(refer_m, refer_h, strict=True))
        fn = sum(h and not m for m, h in zip(refer_m, refer_h, strict=True))
        tn = sum(not m and not h for m, h in zip(refer_m, refer_h, strict=True))
        fp = sum(m and not h for m, h in zip(refer_m, refer_h, strict=True))
        sens, sens_lo, sens_hi = proportion(tp, tp + fn)
        spec, spec_lo, spec_hi = proportion(tn, tn + fp)
        quality_agree = sum(p.machine_gradable == p.grader_gradable for p in self.pairs)
        return {
            "group": self.kind,
            "value": self.value,
            "visits": self.visits,
            "eyes": self.eyes,
            "ungradable_eyes": self.ungradable_eyes,
            "ungradable_rate": _round(self.ungradable_eyes / self.eyes if self.eyes else None),
            "retake_eyes": self.retake_eyes,
            **{f"outcome_{k}": v for k, v in sorted(self.outcomes.items())},
            "queue_open": self.queue_open,
            "queue_oldest_days": _round(self.queue_oldest_days),
            "reviewed_eyes": len(self.pairs),
            "quality_agreement": _round(quality_agree / len(self.pairs) if self.pairs else None),
            "graded_pairs": len(both),
            "exact_agreement": _round(
                sum(m == h for m, h in zip(machine, human, strict=True)) / len(both)
                if both
                else None
            ),
            "weighted_kappa": _round(kappa),
            "referable_tp": tp,
            "referable_fn": fn,
            "referable_tn": tn,
            "referable_fp": fp,
            "sensitivity": _round(sens),
            "sensitivity_ci_low": _round(sens_lo),
            "sensitivity_ci_high": _round(sens_hi),
            "specificity": _round(spec),
            "specificity_ci_low": _round(spec_lo),
            "specificity_ci_high": _round(spec_hi),
        }


def _round(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 4)


def weighted_kappa(a: list[int], b: list[int]) -> float | None:
    """Quadratic weighted kappa (scikit-learn); None with fewer than two pairs or when it is
    undefined (every eye in one grade)."""
    if len(a) < 2:
        return None
    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(cohen_kappa_score(a, b, labels=list(range(5)), weights="quadratic"))
    return None if math.isnan(value) else value


def proportion(k: int, n: int) -> tuple[float | None, float | None, float | None]:
    """k/n with its Wilson 95 % interval (scipy); Nones when n is 0."""
    if n == 0:
        return None, None, None
    from scipy.stats import binomtest

    interval = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return k / n, float(interval.low), float(interval.high)


@dataclass
class Report:
    overall: dict[str, Any]
    sites: list[dict[str, Any]]
    months: list[dict[str, Any]]

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [self.overall, *self.sites, *self.months]


def agreement_report(db: Session) -> Report:
    """The figures over every visit (an administrator's or grader's view)."""
    visits = db.scalars(select(Visit).options(*EAGER).order_by(Visit.visit_date, Visit.id)).all()
    groups: dict[tuple[str, str], Group] = {}

    def groups_of(visit: Visit) -> Iterable[Group]:
        keys = [
            ("all", ""),
            ("site", visit.site or "(none)"),
            ("month", f"{visit.visit_date:%Y-%m}"),
        ]
        return [groups.setdefault(k, Group(*k)) for k in keys]

    now = utcnow()
    for visit in visits:
        outcome = outcome_of(visit)
        reviews = latest_reviews(visit)
        item = next((i for i in visit.queue_items if i.closed is None), None)
        for group in groups_of(visit):
            group.visits += 1
            group.outcomes[outcome.rule.id] += 1
            for eye in outcome.eyes:
                group.eyes += 1
                group.ungradable_eyes += not eye.final.gradable
                group.retake_eyes += eye.retake
                review = reviews.get(eye.eye)
                if review is not None:
                    machine = review.machine
                    group.pairs.append(
                        Pair(
                            bool(machine.get("gradable")),
                            machine.get("grade"),
                            review.gradable,
                            review.grade,
                        )
                    )
            if item is not None:
                group.queue_open += 1
                age = (now - as_utc(item.created)).total_seconds() / 86400
                group.queue_oldest_days = max(group.queue_oldest_days or 0.0, age)
    overall = groups.get(("all", ""), Group("all")).row()
    sites = [g.row() for k, g in sorted(groups.items()) if k[0] == "site"]
    months = [g.row() for k, g in sorted(groups.items()) if k[0] == "month"]
    return Report(overall, sites, months)


def open_queue_size(db: Session) -> int:
    return len(db.scalars(select(ReviewItem.id).where(ReviewItem.closed.is_(None))).all())


def write_csv(report: Report, handle: IO[str]) -> None:
    """The report as CSV, one row per group; every cell safe against formula injection (site
    names are typed by users)."""
    rows = report.rows
    names: list[str] = []
    for row in rows:
        names += [k for k in row if k not in names]
    writer = SafeDictWriter(handle, names)
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: (0 if k not in row else "" if row[k] is None else row[k]) for k in names}
        )
