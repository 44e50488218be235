"""Means and spreads over seeds, and the test the claims use for a difference beyond the spread."""

from __future__ import annotations


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) of a list of numbers."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_sd of no values")
    mean = sum(values) / n
    sd = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else 0.0
    return mean, sd


def clearly_above(high: list[float], low: list[float], margin: float = 0.0) -> bool:
    """Whether the mean of ``high`` exceeds the mean of ``low`` by at least ``margin`` AND by more
    than the larger of their standard deviations (a difference beyond the spread over seeds)."""
    (mh, sh), (ml, sl) = mean_sd(high), mean_sd(low)
    return mh - ml >= margin and mh - ml > max(sh, sl)


def seed_summary(values: list[float]) -> dict:
    """The fields of a README row for one cell run at several seeds: ``reproduced`` (the mean),
    ``spread`` (the standard deviation) and ``n`` (the number of seeds)."""
    mean, sd = mean_sd(values)
    return {"reproduced": mean, "spread": sd, "n": len(values)}
