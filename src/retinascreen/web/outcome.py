"""A visit's outcome: per eye the worst grade among its gradable photos (a grader's grade where
there is one), per patient the worse eye, then the policy table's rule. Also the review-queue
rules. Pure functions of the photos' results, the graders' decisions and the policy."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from retinascreen.web.policy import Policy, Rule

EYES = ("right", "left")
UNRECORDED = "unrecorded"
"""The eye key of photos stored without an eye (screenings from before visits)."""


@dataclass(frozen=True)
class PhotoFinding:
    """What the machine said about one photo."""

    photo_id: int
    eye: str
    field: str | None
    gradable: bool
    grade: int
    referable: bool
    referable_probability: float
    threshold: float | None = None
    maculopathy: bool = False


@dataclass(frozen=True)
class HumanGrade:
    """A grader's decision on one eye."""

    gradable: bool
    grade: int | None
    maculopathy: bool
    grader: str
    note: str = ""
    when: str = ""
    retake: bool = False
    """The grader asks for new photographs of this eye (quality), graded or not."""


@dataclass(frozen=True)
class EyeFinding:
    gradable: bool
    grade: int | None
    maculopathy: bool
    photo_id: int | None
    """The photo that decided (the worst gradable one; the first one if none is gradable)."""
    missing_fields: tuple[str, ...] = ()
    """Required fields (policy) without a gradable photo: they need a retake."""
    retake: bool = False
    """New photographs are needed (ungradable, a missing field, or a grader says so)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "gradable": self.gradable,
            "grade": self.grade,
            "maculopathy": self.maculopathy,
            "photo_id": self.photo_id,
            "missing_fields": list(self.missing_fields),
            "retake": self.retake,
        }


@dataclass(frozen=True)
class EyeOutcome:
    eye: str
    machine: EyeFinding
    human: HumanGrade | None
    final: EyeFinding
    rule: Rule

    @property
    def retake(self) -> bool:
        """Whether this eye needs new photographs (the final finding's ``retake``)."""
        return self.final.retake

    @property
    def source(self) -> str:
        """``grader`` when a grader's decision is the final one, else ``machine``."""
        return "grader" if self.human is not None else "machine"

    def to_dict(self) -> dict[str, Any]:
        human = None
        if self.human is not None:
            human = {
                "gradable": self.human.gradable,
                "grade": self.human.grade,
                "maculopathy": self.human.maculopathy,
                "retake": self.human.retake,
                "grader": self.human.grader,
                "note": self.human.note,
                "created": self.human.when,
            }
        return {
            "eye": self.eye,
            "machine": self.machine.to_dict(),
            "grader": human,
            "final": self.final.to_dict(),
            "source": self.source,
            "retake": self.retake,
            "rule": rule_dict(self.rule),
        }


@dataclass(frozen=True)
class VisitOutcome:
    eyes: tuple[EyeOutcome, ...]
    rule: Rule
    eye: str
    photo_id: int | None
    policy: str
    reasons: tuple[str, ...] = field(default=())

    @property
    def decided_by(self) -> str:
        """Which eye, photo and rule decided, in words."""
        deciding = next(e for e in self.eyes if e.eye == self.eye)
        photo = f"photo #{self.photo_id}" if self.photo_id is not None else "no photo"
        who = f"grader {deciding.human.grader}" if deciding.human else "the machine's grade"
        return f"{self.eye} eye, {photo}, {who}, rule '{self.rule.id}'"

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.rule.action,
            "summary": self.rule.summary,
            "text": self.rule.text,
            "rule": rule_dict(self.rule),
            "eye": self.eye,
            "photo_id": self.photo_id,
            "decided_by": self.decided_by,
            "policy": self.policy,
            "eyes": {e.eye: e.to_dict() for e in self.eyes},
        }


def rule_dict(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "action": rule.action,
        "urgency": rule.urgency or None,
        "months": rule.months,
        "summary": rule.summary,
        "text": rule.text,
    }


def machine_eye(photos: Iterable[PhotoFinding], required: Iterable[str] = ()) -> EyeFinding:
    """The worst grade among the gradable photos of one eye (the first such photo decides);
    ``required``: fields that need a gradable photo (listed in ``missing_fields`` if not)."""
    photos = list(photos)
    gradable = [p for p in photos if p.gradable]
    missing = tuple(f for f in required if not any(p.field == f for p in gradable))
    if not gradable:
        first = photos[0].photo_id if photos else None
        return EyeFinding(False, None, False, first, missing, retake=True)
    worst = max(gradable, key=lambda p: p.grade)  # max keeps the first of equals
    maculopathy = any(p.maculopathy for p in gradable)
    return EyeFinding(True, worst.grade, maculopathy, worst.photo_id, missing, bool(missing))


def eye_rule(finding: EyeFinding, policy: Policy) -> Rule:
    """The policy rule of one eye: ungradable, else its grade's (or maculopathy's, if ranked
    higher); a missing required field makes it a retake unless a higher rule stands."""
    ungradable = policy.for_finding("ungradable")
    if not finding.gradable or finding.grade is None:
        return ungradable
    rule = policy.for_grade(finding.grade)
    if finding.maculopathy:
        macula = policy.for_finding("maculopathy")
        if macula.rank > rule.rank:
            rule = macula
    if finding.retake and ungradable.rank > rule.rank:
        return ungradable
    return rule


def visit_outcome(
    photos: Iterable[PhotoFinding],
    human: Mapping[str, HumanGrade],
    policy: Policy,
    *,
    eyes: Iterable[str] = EYES,
    required: Iterable[str] | None = None,
) -> VisitOutcome:
    """The outcome of a visit from its photos, the graders' latest decisions and the policy.

    ``eyes``: the eyes the visit should have (an eye with no photo at all is ungradable);
    ``required``: the fields each eye needs (default: the policy's ``required_fields``). A
    grader's decision replaces the machine's for that eye (fields included).
    """
    photos = list(photos)
    fields = policy.required_fields if required is None else tuple(required)
    wanted = list(dict.fromkeys([*eyes, *(p.eye for p in photos)]))
    outcomes = []
    for eye in wanted:
        machine = machine_eye((p for p in photos if p.eye == eye), fields)
        decision = human.get(eye)
        final = machine
        if decision is not None:
            final = EyeFinding(
                decision.gradable,
                decision.grade if decision.gradable else None,
                decision.maculopathy if decision.gradable else False,
                machine.photo_id,
                machine.missing_fields if decision.retake else (),
                retake=decision.retake or not decision.gradable,
            )
        outcomes.append(EyeOutcome(eye, machine, decision, final, eye_rule(final, policy)))
    deciding = max(outcomes, key=lambda o: o.rule.rank)  # the first of equal ranks
    return VisitOutcome(
        eyes=tuple(outcomes),
        rule=deciding.rule,
        eye=deciding.eye,
        photo_id=deciding.final.photo_id,
        policy=policy.name,
    )


def review_reasons(
    photos: Iterable[PhotoFinding],
    policy: Policy,
    *,
    sample_key: str,
    eyes: Iterable[str] = EYES,
    required: Iterable[str] | None = None,
) -> list[dict[str, str]]:
    """Why a grader should see this visit (``[]``: not queued), by the policy's [review] rules.

    The random share of negatives is drawn from ``sample_key`` (the visit's public id) through
    SHA-256, so the draw is random across visits and the same on every recomputation.
    """
    photos = list(photos)
    rules = policy.review
    fields = policy.required_fields if required is None else tuple(required)
    reasons: list[dict[str, str]] = []
    for eye in dict.fromkeys([*eyes, *(p.eye for p in photos)]):
        own = [p for p in photos if p.eye == eye]
        finding = machine_eye(own, fields)
        if not finding.gradable:
            if rules.ungradable:
                reasons.append({"eye": eye, "rule": "ungradable", "text": "no gradable photo"})
            continue
        if finding.missing_fields and rules.ungradable:
            what = ", ".join(finding.missing_fields)
            reasons.append({"eye": eye, "rule": "ungradable", "text": f"no gradable {what} photo"})
        gradable = [p for p in own if p.gradable]
        if rules.referable and any(p.referable or p.grade >= 2 for p in gradable):
            reasons.append({"eye": eye, "rule": "referable", "text": "the machine refers"})
        if rules.maculopathy and finding.maculopathy:
            reasons.append({"eye": eye, "rule": "maculopathy", "text": "maculopathy flagged"})
        near = [
            p
            for p in gradable
            if abs(p.referable_probability - (p.threshold if p.threshold is not None else 0.5))
            <= rules.near_threshold
        ]
        if near and not any(r["eye"] == eye and r["rule"] == "referable" for r in reasons):
            reasons.append(
                {"eye": eye, "rule": "near-threshold", "text": "near the referral threshold"}
            )
    if not reasons and sampled(sample_key, rules.random_negatives):
        share = f"{rules.random_negatives:.0%}"
        reasons.append({"eye": "both", "rule": "random", "text": f"random {share} of negatives"})
    return reasons


def sampled(key: str, share: float) -> bool:
    """Whether ``key`` falls in a ``share`` (0..1) drawn uniformly through SHA-256."""
    draw = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
    return draw < share


def finding_of(
    result: Mapping[str, Any], *, photo_id: int, eye: str, field: str | None
) -> PhotoFinding:
    """A photo's :class:`PhotoFinding` from its stored prediction result."""
    rule = result.get("referral_rule")
    threshold = rule.get("threshold") if isinstance(rule, dict) else None
    macula = result.get("maculopathy")
    if isinstance(macula, dict):  # issue 24's flag: {"present": bool, "rule": ...}
        macula = macula.get("present", macula.get("value"))
    return PhotoFinding(
        photo_id=photo_id,
        eye=eye,
        field=field,
        gradable=bool(result.get("gradable", True)),
        grade=int(result.get("grade", 0)),
        referable=bool(result.get("referable", False)),
        referable_probability=float(result.get("referable_probability", 0.0)),
        threshold=None if threshold is None else float(threshold),
        maculopathy=bool(macula),
    )
