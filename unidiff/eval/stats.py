"""Confidence intervals for success rates.

Policy success rates come from a few dozen episodes; the Wilson score interval stays inside
[0, 1] and is sensible at 0/n and n/n, where the normal approximation gives zero width.
"""
from __future__ import annotations

import math


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (low, high) for `successes` out of `n` trials (z = 1.96: 95 %)."""
    if isinstance(n, bool) or int(n) != n or n <= 0:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if int(successes) != successes or not 0 <= successes <= n:
        raise ValueError(f"successes must be an integer in [0, {n}], got {successes!r}")
    if z <= 0:
        raise ValueError(f"z must be positive, got {z}")
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # clamp float round-off so 0/n gives exactly 0 and n/n exactly 1
    return max(0.0, centre - half), min(1.0, centre + half)
