"""Classification metrics."""
from __future__ import annotations

from typing import Iterable


def accuracy(predictions: Iterable[int], labels: Iterable[int]) -> float:
    """The fraction of positions where the prediction equals the label (0.0 to 1.0).

    Raises ValueError for inputs it cannot score.
    """
    predictions, labels = list(predictions), list(labels)
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    if not labels:
        raise ValueError("the accuracy of no predictions is undefined")
    return sum(p == y for p, y in zip(predictions, labels)) / len(labels)
