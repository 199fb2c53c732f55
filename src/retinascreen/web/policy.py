"""The screening programme's policy table (TOML): which rule each eye's finding meets, and the
rules that send a visit to a grader. The default (``assets/screening-policy.toml``) follows the
ICO Guidelines for Diabetic Eye Care; a site points ``SCREENING_POLICY`` at its own copy."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from retinascreen.errors import ConfigError

DEFAULT_POLICY = Path(__file__).resolve().parents[1] / "assets" / "screening-policy.toml"
ACTIONS = ("rescreen", "retake", "refer")
FINDINGS = ("ungradable", "maculopathy")


@dataclass(frozen=True)
class Rule:
    """One row of the policy table."""

    id: str
    action: str
    rank: int
    text: str
    letter: str
    grades: tuple[int, ...] = ()
    findings: tuple[str, ...] = ()
    urgency: str = ""
    months: int | None = None

    @property
    def summary(self) -> str:
        """``rescreen in 12 months`` / ``retake now`` / ``refer (urgent)``."""
        if self.action == "rescreen":
            return f"rescreen in {self.months} months" if self.months else "rescreen"
        if self.action == "retake":
            return "retake now"
        return f"refer ({self.urgency})" if self.urgency else "refer"


@dataclass(frozen=True)
class ReviewRules:
    """Which eyes go to a grader."""

    ungradable: bool = True
    referable: bool = True
    maculopathy: bool = True
    near_threshold: float = 0.10
    random_negatives: float = 0.10


@dataclass(frozen=True)
class Policy:
    name: str
    source: str
    rules: tuple[Rule, ...]
    review: ReviewRules
    path: str
    required_fields: tuple[str, ...] = ("macula",)
    """Fields each eye needs a gradable photo of; without one the eye needs a retake."""

    def for_grade(self, grade: int) -> Rule:
        return self._find(lambda rule: grade in rule.grades, f"grade {grade}")

    def for_finding(self, finding: str) -> Rule:
        return self._find(lambda rule: finding in rule.findings, finding)

    def _find(self, match: Any, what: str) -> Rule:
        for rule in self.rules:
            if match(rule):
                return rule
        raise ConfigError(f"screening policy {self.path} has no rule for {what}")


def _rule(data: Any, path: str) -> Rule:
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: each [[rules]] entry must be a table")
    try:
        rule = Rule(
            id=str(data["id"]),
            action=str(data["action"]),
            rank=int(data["rank"]),
            text=str(data["text"]),
            letter=str(data["letter"]),
            grades=tuple(int(g) for g in data.get("grades", ())),
            findings=tuple(str(f) for f in data.get("findings", ())),
            urgency=str(data.get("urgency", "")),
            months=None if data.get("months") is None else int(data["months"]),
        )
    except KeyError as exc:
        raise ConfigError(f"{path}: a rule lacks {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: rule {data.get('id')!r}: {exc}") from None
    if rule.action not in ACTIONS:
        raise ConfigError(f"{path}: rule {rule.id!r}: action must be one of {', '.join(ACTIONS)}")
    if any(g not in range(5) for g in rule.grades) or any(f not in FINDINGS for f in rule.findings):
        raise ConfigError(
            f"{path}: rule {rule.id!r}: grades are 0-4, findings {', '.join(FINDINGS)}"
        )
    return rule


@lru_cache(maxsize=8)
def load_policy(path: str | None = None) -> Policy:
    """The policy in ``path`` (default: the bundled ICO table); a clear error when it is bad."""
    file = Path(path) if path else DEFAULT_POLICY
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the screening policy {file}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"screening policy {file} is not valid TOML: {exc}") from None
    head = data.get("policy") or {}
    rules = tuple(_rule(item, str(file)) for item in data.get("rules") or ())
    review = data.get("review") or {}
    try:
        review_rules = ReviewRules(
            ungradable=bool(review.get("ungradable", True)),
            referable=bool(review.get("referable", True)),
            maculopathy=bool(review.get("maculopathy", True)),
            near_threshold=float(review.get("near_threshold", 0.10)),
            random_negatives=float(review.get("random_negatives", 0.10)),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"screening policy {file}: [review]: {exc}") from None
    if not 0.0 <= review_rules.random_negatives <= 1.0:
        raise ConfigError(f"screening policy {file}: random_negatives must be 0 to 1")
    policy = Policy(
        name=str(head.get("name") or file.stem),
        source=str(head.get("source") or ""),
        rules=rules,
        review=review_rules,
        path=str(file),
        required_fields=tuple(str(f) for f in head.get("required_fields", ("macula",))),
    )
    if any(f not in ("macula", "disc", "other") for f in policy.required_fields):
        raise ConfigError(f"screening policy {file}: required_fields are macula, disc or other")
    for grade in range(5):  # every grade and finding must lead somewhere
        policy.for_grade(grade)
    for finding in FINDINGS:
        policy.for_finding(finding)
    return policy
