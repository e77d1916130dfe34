"""What every benchmark shares: how a set of samples is reported."""

from __future__ import annotations

import statistics


def report(label: str, samples: list[float], width: int = 56) -> float:
    """Print median, p10 and p90 in milliseconds; return the median in seconds."""
    median = statistics.median(samples)
    q = statistics.quantiles(samples, n=10) if len(samples) >= 10 else [min(samples), max(samples)]
    print(
        f"  {label:<{width}} median {median * 1000:8.2f} ms   p10 {q[0] * 1000:8.2f}   "
        f"p90 {q[-1] * 1000:8.2f}   n={len(samples)}"
    )
    return median
