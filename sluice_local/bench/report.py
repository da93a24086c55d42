"""The benchmark's figures from its runs, and ``report.md``: every figure with its minimum, median and maximum over
the repeats, flagged when its spread is over 15 % or a run it came from saw over 5 % CPU steal."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

SPREAD_LIMIT = 0.15
STEAL_LIMIT = 0.05


@dataclass
class Figure:
    """One figure over the repeats (a ratio, or an absolute value with its unit)."""

    name: str
    what: str
    values: list[float]
    unit: str = "×"
    steal: list[float] = field(default_factory=list)
    target: str | None = None
    passed: bool | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def spread(self) -> float:
        if len(self.values) < 2 or not self.median:
            return 0.0
        return (max(self.values) - min(self.values)) / abs(self.median)

    @property
    def flags(self) -> list[str]:
        flags = []
        if self.spread > SPREAD_LIMIT:
            flags.append(f"spread {self.spread:.0%}")
        if self.steal and max(self.steal) > STEAL_LIMIT:
            flags.append(f"steal {max(self.steal):.0%}")
        return flags

    def as_dict(self) -> dict:
        data = asdict(self)
        values = self.values or [float("nan")]
        data.update(
            min=min(values), median=self.median, max=max(values), spread=self.spread, flags=self.flags
        )
        return data


def _number(value: float, unit: str) -> str:
    if math.isnan(value):
        return "—"
    if unit == "×":
        return f"{value:.2f}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def table(figures: Sequence[Figure]) -> str:
    lines = [
        "| figure | what it compares | min | median | max | unit | target | flags |",
        "| --- | --- | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for f in figures:
        values = f.values or [float("nan")]
        verdict = "" if f.target is None else f"{f.target}: {'met' if f.passed else 'missed'}"
        lines.append(
            f"| {f.name} | {f.what} | {_number(min(values), f.unit)} | {_number(f.median, f.unit)} | "
            f"{_number(max(values), f.unit)} | {f.unit} | {verdict} | {', '.join(f.flags)} |"
        )
    return "\n".join(lines)
