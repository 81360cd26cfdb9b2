"""The Finding: what one probe check learned, stored in the case and read by the rules.

A finding records where the evidence came from (`source`, `check`), the exact request
(query text, variables, time window in UTC), when it was fetched, an outcome from the
fixed list below, a one-line summary for people, and `signals`: flat scalar values named
`source.signal` (for example `platform.invitation_pending_days`) that classification
rules test. Bulky raw rows live beside the case in a JSON Lines file named by `raw_ref`.

"No data" (`empty`) and "could not look" (`failed`, `timed_out`, `rate_limited`,
`skipped`) are different outcomes and must stay apart.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import Any

OUTCOMES = (
    "ok",
    "empty",
    "partial",
    "truncated",
    "failed",
    "timed_out",
    "rate_limited",
    "skipped",
)

# Outcomes where the probe did not see the whole answer; triage reports them as partial.
INCOMPLETE_OUTCOMES = frozenset({"partial", "truncated", "failed", "timed_out", "rate_limited"})

SIGNAL_NAME = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_.]*$")

SignalValue = bool | int | float | str | None


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def isoformat(moment: dt.datetime) -> str:
    """Format an aware datetime as ISO 8601 in UTC with a `Z` suffix."""
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass
class Finding:
    source: str
    check: str
    subject: str
    outcome: str
    summary: str
    request: dict[str, Any] = dataclasses.field(default_factory=dict)
    fetched_at: str = dataclasses.field(default_factory=lambda: isoformat(utc_now()))
    signals: dict[str, SignalValue] = dataclasses.field(default_factory=dict)
    reason: str | None = None
    raw_ref: str | None = None
    window: dict[str, str] | None = None
    component: str | None = None

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown finding outcome {self.outcome!r}; expected one of {OUTCOMES}")

        for name in self.signals:
            if not SIGNAL_NAME.match(name) or not name.startswith(self.source + "."):
                raise ValueError(f"signal {name!r} must be named '{self.source}.<signal>'")

    @property
    def key(self) -> str:
        """Identity of the check: a re-run with the same key replaces this finding."""
        return f"{self.source}.{self.check}:{self.subject}"

    @property
    def complete(self) -> bool:
        return self.outcome not in INCOMPLETE_OUTCOMES

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["key"] = self.key
        return {name: value for name, value in data.items() if value not in (None, {}, [])}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        fields = {field.name for field in dataclasses.fields(cls)}
        return cls(**{name: value for name, value in data.items() if name in fields})
