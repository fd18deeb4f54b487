"""Training configuration and the record schema.

The configuration is a frozen dataclass so that a run's settings can be stored next to its
checkpoint and the run repeated later. ``load_config`` applies overrides from a JSON file
and from keyword arguments on top of the defaults.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

# Columns of a snapshot record that the model uses.
NUMERIC_FEATURES = (
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "support_calls_90d",
    "late_payments_12m",
)
# Heavy-tailed money columns are log-transformed before standardisation.
LOG_FEATURES = ("monthly_charges", "total_charges")
TEXT_FIELD = "last_ticket"
LABEL_FIELD = "churned_next_month"
GROUP_FIELD = "customer_id"


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 7

    # synthetic data
    n_customers: int = 300
    months: int = 6

    # splits
    test_percent: int = 20
    val_fraction: float = 0.15

    # features
    max_tokens: int = 12
    min_token_count: int = 3

    # model
    embed_dim: int = 16
    hidden_size: int = 32
    dropout: float = 0.2

    # optimisation
    lr: float = 3e-3
    weight_decay: float = 1e-4
    batch_size: int = 32
    accum_steps: int = 2
    epochs: int = 6
    warmup_steps: int = 10
    eval_batch_size: int = 256

    # output
    output_dir: str = "artifacts"
    model_version: str = "v1"

    def to_dict(self) -> dict:
        return asdict(self)


def load_config(path: str | Path | None = None, **overrides) -> TrainConfig:
    """Defaults, updated from the JSON object in ``path`` (if given), then from ``overrides``."""
    values: dict = {}
    if path is not None:
        values.update(json.loads(Path(path).read_text()))
    values.update(overrides)
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown config keys: {', '.join(unknown)}")
    return replace(TrainConfig(), **values)
