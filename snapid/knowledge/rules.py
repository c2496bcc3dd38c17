"""Interaction rules: classes that must not (or should carefully) go together. Pure; serving calls match_rules.

Rules file columns (CSV or YAML, case-insensitive):
  a, b                      a pair of class ids (the demo's interactions.csv), or
  classes                   two or more class ids separated by "|" or new lines (a set)
  severity                  contraindicated, warning, caution, info… (default "caution")
  reason_<lang>, message_<lang>, reason, message   the text shown, per language
A rule matches when every one of its classes is among the recognised objects of one query.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from snapid.knowledge import KnowledgeError
from snapid.knowledge.cards import NO_LANGUAGE
from snapid.knowledge.table import Row, language_of, read_rows

# Most severe first: warnings come back in this order; an unlisted severity sorts after "info".
SEVERITY_ORDER = ("contraindicated", "danger", "warning", "caution", "info")
DEFAULT_SEVERITY = "caution"
MAX_RULE_CLASSES = 10
_SEVERITY = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
_MESSAGE_PREFIXES = ("reason_", "message_")


@dataclass(frozen=True)
class Rule:
    classes: tuple[str, ...]                    # sorted, unique, at least two
    severity: str = DEFAULT_SEVERITY
    message: dict[str, str] = field(default_factory=dict)   # language → text

    def as_dict(self) -> dict:
        return {"classes": list(self.classes), "severity": self.severity, "message": dict(self.message)}

    @classmethod
    def from_dict(cls, data: Mapping) -> Rule:
        return cls(tuple(sorted(str(c) for c in data["classes"])), str(data.get("severity") or DEFAULT_SEVERITY),
                   {str(k): str(v) for k, v in (data.get("message") or {}).items()})


def parse_rules(path: Path) -> list[Rule]:
    """Every rule in ``path``, in file order; a repeated set of classes is an error naming both lines."""
    rows = read_rows(Path(path), key_column="classes")
    rules, seen = [], {}
    for row in rows:
        rule = rule_from_row(row)
        if rule.classes in seen:
            raise KnowledgeError(f"{row.where}: the classes {list(rule.classes)} already have a rule "
                                 f"({seen[rule.classes]})")
        seen[rule.classes] = row.where
        rules.append(rule)
    return rules


def rule_from_row(row: Row) -> Rule:
    values = row.values
    if "classes" in values:
        ids = [c.strip() for c in re.split(r"[|\n]", values["classes"]) if c.strip()]
    else:
        ids = [values[c] for c in ("a", "b") if values.get(c)]
    if len(ids) < 2:
        raise KnowledgeError(f"{row.where}: a rule needs two classes (columns a and b, or classes 'x|y|z')")
    if len(set(ids)) != len(ids):
        raise KnowledgeError(f"{row.where}: class {_first_repeat(ids)!r} appears twice in one rule")
    if len(ids) > MAX_RULE_CLASSES:
        raise KnowledgeError(f"{row.where}: {len(ids)} classes in one rule (limit {MAX_RULE_CLASSES})")
    severity = values.get("severity", DEFAULT_SEVERITY).lower()
    if not _SEVERITY.match(severity):
        raise KnowledgeError(f"{row.where}: severity {values['severity']!r} is not a word such as "
                             f"{', '.join(SEVERITY_ORDER)}")
    message = {}
    for column, text in values.items():
        lang = language_of(column, _MESSAGE_PREFIXES)
        if lang:
            message[lang] = text
        elif column in ("reason", "message"):
            message[NO_LANGUAGE] = text
    return Rule(tuple(sorted(ids)), severity, message)


def _first_repeat(ids: list[str]) -> str:
    return next(i for n, i in enumerate(ids) if i in ids[:n])


def severity_rank(severity: str) -> int:
    return SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else len(SEVERITY_ORDER)


def match_rules(rules: Iterable[Rule | Mapping], class_ids: list[str]) -> list[dict]:
    """Warnings for the rules whose classes all appear in ``class_ids`` (the objects of one query).

    ``rules`` are Rule objects or their dicts (as in a bundle's knowledge.json). Returns
    [{"classes", "severity", "message": {lang: text}}], most severe first, then in file order.
    """
    present = {str(c) for c in class_ids}
    if len(present) < 2:
        return []
    found = []
    for position, item in enumerate(rules):
        rule = item if isinstance(item, Rule) else Rule.from_dict(item)
        if len(rule.classes) >= 2 and present.issuperset(rule.classes):
            found.append((severity_rank(rule.severity), position, rule.as_dict()))
    return [warning for _, _, warning in sorted(found, key=lambda t: t[:2])]
