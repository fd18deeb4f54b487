"""Classification metrics."""
from __future__ import annotations

from typing import Iterable


def accuracy(predictions: Iterable[int], labels: Iterable[int]) -> float:
    """The fraction of positions where the prediction equals the label (0.0 to 1.0).

    Raises ValueError for inputs it cannot score.
    """
    raise NotImplementedError
