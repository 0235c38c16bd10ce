"""Bootstrap intervals over scored items: one score's 95 % interval, and paired differences.

Items are resampled with replacement (utterances: for PR, an utterance's positions stay
together, since neighbouring frames are not independent). The same draws are used for every
upstream on a task, so the difference of two upstreams on each draw is a paired bootstrap of
their difference. With several seeds, each draw scores every seed on the same items and the
seeds' scores are averaged: the interval is that of the seed mean for these test items.
"""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np

DRAWS = 1000
LEVEL = 0.95


def draws(n_items: int, n_draws: int = DRAWS, seed: int = 0) -> np.ndarray:
    """``n_draws`` x ``n_items`` indices, resampling the items with replacement (seeded)."""
    if n_items < 1:
        raise ValueError("a bootstrap needs at least one scored item")
    return np.random.default_rng(seed).integers(0, n_items, size=(n_draws, n_items))


def score(correct: np.ndarray, total: np.ndarray, error: bool = False) -> float:
    """Accuracy % (or error % with ``error``) of per-item counts."""
    acc = 100.0 * float(correct.sum()) / float(total.sum())
    return 100.0 - acc if error else acc


def resampled(correct: np.ndarray, total: np.ndarray, idx: np.ndarray, error: bool = False) -> np.ndarray:
    """The score on each draw of ``idx`` (draws x items)."""
    acc = 100.0 * correct[idx].sum(1) / total[idx].sum(1)
    return 100.0 - acc if error else acc


def interval(values: np.ndarray, level: float = LEVEL) -> Tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap ``values``."""
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def summary(point: float, values: np.ndarray, level: float = LEVEL) -> Dict[str, float]:
    """``{"value", "low", "high"}``: a point estimate and its bootstrap interval."""
    low, high = interval(values, level)
    return {"value": float(point), "low": low, "high": high}


def paired_difference(a: Sequence[float], b: Sequence[float], a_draws: np.ndarray, b_draws: np.ndarray,
                      level: float = LEVEL) -> Dict[str, object]:
    """``a - b`` (seed means of point scores ``a``, ``b``) with its paired interval, and whether
    the interval excludes 0."""
    diff = summary(float(np.mean(a)) - float(np.mean(b)), a_draws - b_draws, level)
    diff["significant"] = bool(diff["low"] > 0 or diff["high"] < 0)
    return diff
