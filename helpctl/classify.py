"""Classification rules: declarative conditions over findings that vote for a label.

A rule in the profile names a label and a condition tree (documented in docs/rules.md):

    {all: [C, ...]}  {any: [C, ...]}  {not: C}
    {signal: NAME, OP: VALUE, check: K}        a finding's signal compared with VALUE;
                                               `check` (optional) limits it to one check
    {outcome: OUTCOME | [..], source: S, check: K}   a finding of that source ended so
    {case: FIELD, OP: VALUE}                   a field of the case (kind, text, subject, ...)

OP is one of equals, not_equals, gt, gte, lt, lte, in, contains, matches (a regular
expression) or exists (true/false). Every rule whose condition holds fires; the case gets
the highest-ranked label among them (incident > bug > feature > answered).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from helpctl.findings import Finding

LABEL_RANK = {"incident": 4, "bug": 3, "feature": 2, "answered": 1}
OPERATORS = ("equals", "not_equals", "gt", "gte", "lt", "lte", "in", "contains", "matches", "exists")
CASE_FIELDS = ("kind", "subject", "body", "text", "organization", "requester", "language", "status")

# A compiled condition returns whether it is true and the keys of the findings behind it.
Condition = Callable[[Mapping[str, Any], list[Finding]], tuple[bool, list[str]]]


@dataclasses.dataclass
class FiredRule:
    name: str
    label: str
    description: str
    findings: list[str]


@dataclasses.dataclass
class Classification:
    label: str | None
    fired: list[FiredRule]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "rules": [dataclasses.asdict(rule) for rule in self.fired]}


def rank(label: str | None) -> int:
    return LABEL_RANK.get(label or "", 0)


def compile_condition(spec: Any) -> Condition:
    """Validate a condition tree and turn it into a function; raises ValueError when invalid."""
    if not isinstance(spec, dict) or not spec:
        raise ValueError(f"a condition must be a mapping, got {spec!r}")

    if "all" in spec or "any" in spec:
        return _compile_group(spec)
    if "not" in spec:
        return _compile_not(spec)
    if "signal" in spec:
        return _compile_signal(spec)
    if "outcome" in spec:
        return _compile_outcome(spec)
    if "case" in spec:
        return _compile_case(spec)

    raise ValueError(f"unknown condition {sorted(spec)}; use all, any, not, signal, outcome or case")


def _only_keys(spec: dict[str, Any], allowed: Iterable[str]) -> None:
    extra = sorted(set(spec) - set(allowed))
    if extra:
        raise ValueError(f"unexpected keys {extra} in condition {spec!r}")


def _compile_group(spec: dict[str, Any]) -> Condition:
    mode = "all" if "all" in spec else "any"
    _only_keys(spec, [mode])
    items = spec[mode]
    if not isinstance(items, list) or not items:
        raise ValueError(f"'{mode}' needs a non-empty list of conditions")
    parts = [compile_condition(item) for item in items]

    def evaluate(case: Mapping[str, Any], findings: list[Finding]) -> tuple[bool, list[str]]:
        results = [part(case, findings) for part in parts]
        held = [result for result in results if result[0]]
        ok = len(held) == len(results) if mode == "all" else bool(held)
        keys = _unique(key for _, found in held for key in found) if ok else []
        return ok, keys

    return evaluate


def _compile_not(spec: dict[str, Any]) -> Condition:
    _only_keys(spec, ["not"])
    inner = compile_condition(spec["not"])

    def evaluate(case: Mapping[str, Any], findings: list[Finding]) -> tuple[bool, list[str]]:
        ok, _ = inner(case, findings)
        return not ok, []

    return evaluate


def _compile_signal(spec: dict[str, Any]) -> Condition:
    name = spec["signal"]
    if not isinstance(name, str) or "." not in name:
        raise ValueError(f"signal {name!r} must be named 'source.signal'")
    check = spec.get("check")
    test = _compile_operator(spec, ["signal", "check"])

    def evaluate(case: Mapping[str, Any], findings: list[Finding]) -> tuple[bool, list[str]]:
        keys = [
            finding.key
            for finding in findings
            if (check is None or finding.check == check) and test(finding.signals.get(name), name in finding.signals)
        ]
        return bool(keys), keys

    return evaluate


def _compile_outcome(spec: dict[str, Any]) -> Condition:
    from helpctl.findings import OUTCOMES

    _only_keys(spec, ["outcome", "source", "check"])
    wanted = spec["outcome"] if isinstance(spec["outcome"], list) else [spec["outcome"]]
    unknown = [item for item in wanted if item not in OUTCOMES]
    if unknown:
        raise ValueError(f"unknown outcome {unknown[0]!r}; use one of {', '.join(OUTCOMES)}")
    source, check = spec.get("source"), spec.get("check")

    def evaluate(case: Mapping[str, Any], findings: list[Finding]) -> tuple[bool, list[str]]:
        keys = [
            finding.key
            for finding in findings
            if finding.outcome in wanted
            and (source is None or finding.source == source)
            and (check is None or finding.check == check)
        ]
        return bool(keys), keys

    return evaluate


def _compile_case(spec: dict[str, Any]) -> Condition:
    field = spec["case"]
    if field not in CASE_FIELDS:
        raise ValueError(f"unknown case field {field!r}; use one of {', '.join(CASE_FIELDS)}")
    test = _compile_operator(spec, ["case"])

    def evaluate(case: Mapping[str, Any], findings: list[Finding]) -> tuple[bool, list[str]]:
        return test(case.get(field), field in case), []

    return evaluate


def _compile_operator(spec: dict[str, Any], own_keys: list[str]) -> Callable[[Any, bool], bool]:
    operators = [key for key in spec if key not in own_keys]
    if len(operators) != 1 or operators[0] not in OPERATORS:
        raise ValueError(f"condition {spec!r} needs exactly one operator out of {', '.join(OPERATORS)}")

    operator = operators[0]
    expected = spec[operator]
    if operator == "matches":
        try:
            pattern = re.compile(str(expected))
        except re.error as error:
            raise ValueError(f"invalid regular expression {expected!r}: {error}") from error
        return lambda value, present: present and value is not None and bool(pattern.search(str(value)))
    if operator == "exists":
        return lambda value, present: present is bool(expected)
    if operator == "in" and not isinstance(expected, list):
        raise ValueError(f"'in' needs a list, got {expected!r}")
    if operator in ("gt", "gte", "lt", "lte") and (isinstance(expected, bool) or not isinstance(expected, (int, float))):
        raise ValueError(f"'{operator}' needs a number, got {expected!r}")
    return lambda value, present: present and _compare(operator, value, expected)


def _compare(operator: str, value: Any, expected: Any) -> bool:
    if operator == "equals":
        return value == expected
    if operator == "not_equals":
        return value != expected
    if operator == "in":
        return value in expected
    if operator == "contains":
        return isinstance(value, (str, list)) and expected in value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return {
        "gt": value > expected,
        "gte": value >= expected,
        "lt": value < expected,
        "lte": value <= expected,
    }[operator]


def _unique(keys: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(keys))


def classify(case_fields: Mapping[str, Any], findings: list[Finding], rules: Iterable[Any]) -> Classification:
    """Run every rule; the label is the highest-ranked one among the rules that fired."""
    fired: list[FiredRule] = []
    for rule in rules:
        ok, keys = compile_condition(rule.when)(case_fields, findings)
        if ok:
            fired.append(FiredRule(rule.name, rule.label, rule.description, keys))

    fired.sort(key=lambda rule: -rank(rule.label))
    label = fired[0].label if fired else None
    return Classification(label, fired)
