"""Customer snapshot data: a synthetic generator, JSONL I/O and the train/val/test split.

A record is one monthly snapshot of one account, labelled with whether the customer
churned in the following month. Every customer appears in several consecutive snapshots.
The production extract has the same columns; ``make_synthetic`` stands in for it in tests
and local runs.
"""
from __future__ import annotations

import json
import math
import random
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import GROUP_FIELD, LABEL_FIELD, TEXT_FIELD

_FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald",
                "Frances", "John", "Radia", "Ken", "Margaret", "Linus")
_LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth",
               "Allen", "Backus", "Perlman", "Thompson", "Hamilton", "Torvalds")
_NEUTRAL_WORDS = ("question", "about", "plan", "upgrade", "address", "change", "router",
                  "setup", "thanks", "invoice", "copy", "password", "reset", "moving")
_COMPLAINT_WORDS = ("billing", "error", "refund", "requested", "slow", "internet", "outage",
                    "again", "cancel", "contract", "overcharged", "unhappy", "competitor", "offer")
_PLAN_PRICES = {"basic": 29.0, "standard": 55.0, "premium": 89.0}


@dataclass
class Splits:
    train: list[dict]
    val: list[dict]
    test: list[dict]


def _ticket_text(rng: np.random.Generator, risk: float, calls: int) -> str:
    """A short support-ticket summary in the agents' free-text style."""
    if calls == 0:
        return ""
    p_complaint = 1.0 / (1.0 + math.exp(-2.0 * risk))
    words = []
    for _ in range(int(rng.integers(2, 7))):
        pool = _COMPLAINT_WORDS if rng.random() < p_complaint else _NEUTRAL_WORDS
        words.append(str(rng.choice(pool)))
    if rng.random() < 0.5:
        words[0] = words[0].upper() if rng.random() < 0.3 else words[0].capitalize()
    if len(words) > 2 and rng.random() < 0.4:
        words[1] += ","
    return " ".join(words) + str(rng.choice(["", ".", "!", "..."]))


def make_synthetic(n_customers: int, months: int, seed: int = 0) -> list[dict]:
    """``n_customers * months`` snapshot records, ordered by customer then month."""
    rng = np.random.default_rng(seed)
    records = []
    for c in range(n_customers):
        first, last = str(rng.choice(_FIRST_NAMES)), str(rng.choice(_LAST_NAMES))
        risk = float(rng.normal())  # latent propensity: drives calls, payments, ticket tone, label
        plan = str(rng.choice(list(_PLAN_PRICES)))
        start_tenure = int(rng.integers(1, 48))
        total = 0.0
        for m in range(months):
            tenure = start_tenure + m
            monthly = round(_PLAN_PRICES[plan] * float(rng.lognormal(0.0, 0.1)), 2)
            total = round(total + monthly * (tenure if m == 0 else 1), 2)
            calls = int(rng.poisson(math.exp(0.4 + 0.8 * risk)))
            late = int(rng.poisson(math.exp(-0.6 + 0.8 * risk)))
            text = _ticket_text(rng, risk, calls)
            logit = (-1.5 + 2.4 * risk + 0.15 * calls - 0.04 * tenure
                     + 0.8 * ("cancel" in text.lower()))
            churned = int(rng.random() < 1.0 / (1.0 + math.exp(-logit)))
            records.append({
                GROUP_FIELD: f"C{c:05d}",
                "snapshot_month": f"2024-{m + 1:02d}",
                "name": f"{first} {last}",
                "email": f"{first.lower()}.{last.lower()}{c}@example.com",
                "plan": plan,
                "tenure_months": tenure,
                "monthly_charges": monthly,
                "total_charges": total,
                "support_calls_90d": calls,
                "late_payments_12m": late,
                TEXT_FIELD: text,
                LABEL_FIELD: churned,
            })
    return records


def write_jsonl(records: list[dict], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")


def read_jsonl(path: str | Path) -> list[dict]:
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _bucket(customer_id: str) -> int:
    return zlib.crc32(customer_id.encode("utf-8")) % 100


def holdout_test(records: list[dict], test_percent: int) -> tuple[list[dict], list[dict]]:
    """Every snapshot of the customers whose id falls in the first ``test_percent`` of 100
    buckets goes to the test set, so it stays the same as new months arrive. Returns
    (rest, test)."""
    test = [r for r in records if _bucket(r[GROUP_FIELD]) < test_percent]
    rest = [r for r in records if _bucket(r[GROUP_FIELD]) >= test_percent]
    return rest, test


def split_records(records: list[dict], *, test_percent: int, val_fraction: float,
                  seed: int) -> Splits:
    """Split snapshot records into train, validation and test sets (see ``holdout_test``
    and ``train_val_split``)."""
    rest, test = holdout_test(records, test_percent)
    train, val = train_val_split(rest, val_fraction, seed)
    return Splits(train=train, val=val, test=test)


def train_val_split(records: list[dict], val_fraction: float,
                    seed: int) -> tuple[list[dict], list[dict]]:
    """Hold out ``val_fraction`` of the customers, with all their snapshots, for model
    selection; returns (train, val). A customer's snapshots are strongly correlated, so they
    must not be spread over two splits."""
    customers = sorted({r[GROUP_FIELD] for r in records})
    random.Random(seed).shuffle(customers)
    val_customers = set(customers[: int(round(len(customers) * val_fraction))])
    train = [r for r in records if r[GROUP_FIELD] not in val_customers]
    val = [r for r in records if r[GROUP_FIELD] in val_customers]
    return train, val


def labels_of(records: list[dict]) -> np.ndarray:
    return np.array([float(r[LABEL_FIELD]) for r in records], dtype=np.float32)
