"""Linear probes (scikit-learn) and the protocols that score them without touching test data.

A probe is standardisation followed by multinomial logistic regression. Its one
hyper-parameter, the inverse regularisation ``C``, is chosen from a grid by accuracy on
held-out data that is never scored: the dev split (PR), or a part of each fold's training items
(SID, ER). Every protocol returns, per scored item, how many it got right out of how many.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

C_GRID = (0.01, 0.1, 1.0)
MAX_ITER = 1000
# lbfgs stops when the largest gradient entry falls below TOL. scikit-learn's 1e-4 took 3.5x the
# time on the demo's PR probe (20,000 frames) for test accuracies within 0.6 points of 1e-3's.
TOL = 1e-3


@dataclass(frozen=True)
class Outcome:
    """Per scored item: correct predictions and the item's size; the ``C`` chosen (per fold)."""

    correct: np.ndarray  # float, per item
    total: np.ndarray  # float, per item (1 for an utterance, its positions for a PR utterance)
    chosen_c: Tuple[float, ...]


def make_probe(c: float) -> Pipeline:
    """Standardise, then logistic regression with inverse regularisation ``c``."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=MAX_ITER, tol=TOL))


def fit_best(x_fit: np.ndarray, y_fit: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
             grid: Sequence[float] = C_GRID) -> Tuple[Pipeline, float]:
    """The probe of ``grid`` with the best accuracy on the validation items (the smaller ``C`` of ties).

    The grid is walked from the strongest regularisation up, each fit starting from the last
    one's weights (the regularisation path), which is several times faster than cold starts.
    """
    scaler = StandardScaler().fit(x_fit)
    xf, xv = scaler.transform(x_fit), scaler.transform(x_val)
    model = LogisticRegression(max_iter=MAX_ITER, tol=TOL, warm_start=True)
    best: Optional[Tuple[float, LogisticRegression, float]] = None
    for c in sorted(grid):
        model.set_params(C=c).fit(xf, y_fit)
        acc = float((model.predict(xv) == y_val).mean())
        if best is None or acc > best[0]:
            best = (acc, copy.deepcopy(model), c)
    return make_pipeline(scaler, best[1]), best[2]


def fixed_split(x_train, y_train, x_dev, y_dev, x_test, y_test, units: np.ndarray,
                grid: Sequence[float] = C_GRID) -> Outcome:
    """Train on train, choose ``C`` on dev, score test; items are the ``units`` (e.g. utterances)."""
    probe, c = fit_best(x_train, y_train, x_dev, y_dev, grid)
    hit = (probe.predict(x_test) == y_test).astype(float)
    ids, inverse = np.unique(units, return_inverse=True)
    correct = np.bincount(inverse, weights=hit, minlength=len(ids))
    total = np.bincount(inverse, minlength=len(ids)).astype(float)
    return Outcome(correct, total, (c,))


def stratified_folds(y: np.ndarray, k: int, seed: int) -> List[Tuple[np.ndarray, np.ndarray]]:
    """``k``-fold stratified splits (fewer when a class has fewer than ``k`` items), shuffled by ``seed``."""
    smallest = int(np.bincount(y).min(initial=k)) if len(y) else 0
    k = max(2, min(k, smallest))
    return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


def group_folds(groups: np.ndarray) -> List[Tuple[np.ndarray, np.ndarray]]:
    """One fold per group (leave-one-group-out), in group order."""
    idx = np.arange(len(groups))
    return [(idx[groups != g], idx[groups == g]) for g in np.unique(groups)]


def inner_split(y: np.ndarray, groups: Optional[np.ndarray], seed: int, held: float = 0.25
                ) -> Tuple[np.ndarray, np.ndarray]:
    """Split training items into fit and validation: one whole group held out where there are
    groups (unseen speakers, as the test fold), else ``held`` of each class (at least one item of
    every class with two or more stays in fit)."""
    idx = np.arange(len(y))
    rng = np.random.default_rng(seed)
    if groups is not None and len(np.unique(groups)) > 1:
        val_group = rng.choice(np.unique(groups))
        return idx[groups != val_group], idx[groups == val_group]
    val = []
    for label in np.unique(y):
        members = rng.permutation(idx[y == label])
        n = int(round(held * len(members))) if len(members) > 1 else 0
        val.extend(members[:min(n, len(members) - 1)] if n else [])
    val = np.sort(np.array(val, dtype=int))
    return np.setdiff1d(idx, val), val


def cross_validated(x: np.ndarray, y: np.ndarray, folds: Sequence[Tuple[np.ndarray, np.ndarray]],
                    groups: Optional[np.ndarray] = None, seed: int = 0,
                    grid: Sequence[float] = C_GRID) -> Outcome:
    """Every item predicted once, by the fold that holds it out; ``C`` chosen inside each fold's
    training items (:func:`inner_split`), then the probe refit on all of them."""
    correct = np.zeros(len(y))
    chosen: List[float] = []
    for k, (train, test) in enumerate(folds):
        fit, val = inner_split(y[train], None if groups is None else groups[train], seed + k)
        if len(val) and len(np.unique(y[train][fit])) > 1:
            _, c = fit_best(x[train][fit], y[train][fit], x[train][val], y[train][val], grid)
        else:  # too few items to hold any out: the grid's middle value
            c = grid[len(grid) // 2]
        probe = make_probe(c).fit(x[train], y[train])
        correct[test] = probe.predict(x[test]) == y[test]
        chosen.append(c)
    return Outcome(correct, np.ones(len(y)), tuple(chosen))

