"""What every benchmark shares: JSON-line results next to their baselines, and percentiles."""

from __future__ import annotations

import json
import math
import sys
from typing import Any


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of `values` (p in 0..100)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def ms(seconds: float) -> float:
    """Seconds as milliseconds, rounded for printing."""
    return round(seconds * 1000, 3)


class Report:
    """One benchmark's measurements, printed as JSON lines and kept for its summary."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.results: list[dict[str, Any]] = []

    def note(self, message: str) -> None:
        """Progress for the reader, on stderr (stdout stays machine-readable)."""
        print(f"[bench/{self.tag}] {message}", file=sys.stderr, flush=True)

    def emit(
        self,
        name: str,
        value: float,
        unit: str,
        *,
        baseline: str | None = None,
        baseline_value: float | None = None,
        target: str | None = None,
        passed: bool | None = None,
        **extra: Any,
    ) -> None:
        """Print one measurement as a JSON line and remember it for the summary."""
        ratio = round(value / baseline_value, 3) if baseline_value else None
        record = {
            "name": name,
            "value": round(value, 3),
            "unit": unit,
            "baseline": baseline,
            "baseline_value": None if baseline_value is None else round(baseline_value, 3),
            "ratio": ratio,
            "target": target,
            "pass": passed,
            **extra,
        }
        self.results.append(record)
        print(json.dumps(record, ensure_ascii=False), flush=True)
