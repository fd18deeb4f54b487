"""The training pipeline: features, model, optimisation, model selection, checkpoint.

Run it with ``python -m churnsvc train [--config cfg.json] [--output-dir DIR]``, or call
``run(cfg)`` from a notebook or a scheduler job.
"""
from __future__ import annotations

import copy
import logging
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import save_checkpoint
from .config import TrainConfig
from .data import Splits, labels_of, make_synthetic, split_records
from .evaluate import best_threshold, evaluate, predict_scores
from .features import FeatureBatch, Featurizer
from .model import ChurnModel, to_tensors

logger = logging.getLogger(__name__)


@dataclass
class Prepared:
    """The splits of a run, the fitted featurizer and the featurized splits."""

    splits: Splits
    featurizer: Featurizer
    train: FeatureBatch
    val: FeatureBatch
    test: FeatureBatch
    y_train: np.ndarray
    y_val: np.ndarray
    y_test: np.ndarray


@dataclass
class TrainResult:
    model: ChurnModel
    featurizer: Featurizer
    splits: Splits
    threshold: float
    val_metrics: dict
    test_metrics: dict
    checkpoint_path: Path
    history: list[dict] = field(default_factory=list)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare(cfg: TrainConfig, records: list[dict]) -> Prepared:
    splits = split_records(records, test_percent=cfg.test_percent,
                           val_fraction=cfg.val_fraction, seed=cfg.seed)
    # Fitted on the training rows only: statistics and vocabulary must not see held-out rows.
    featurizer = Featurizer(max_tokens=cfg.max_tokens, min_token_count=cfg.min_token_count)
    featurizer.fit(splits.train)
    return Prepared(
        splits=splits,
        featurizer=featurizer,
        train=featurizer.transform(splits.train),
        val=featurizer.transform(splits.val),
        test=featurizer.transform(splits.test),
        y_train=labels_of(splits.train),
        y_val=labels_of(splits.val),
        y_test=labels_of(splits.test),
    )


def make_batches(features: FeatureBatch, labels: np.ndarray, batch_size: int,
                 generator: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Shuffled ``(numeric, tokens, labels)`` batches; the last one may be smaller."""
    order = torch.randperm(len(features), generator=generator).numpy()
    batches = []
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        numeric, tokens = to_tensors(features.take(index))
        batches.append((numeric, tokens, torch.from_numpy(labels[index])))
    return batches


def warmup_linear_decay(warmup_steps: int, total_steps: int):
    """LambdaLR factor: linear warmup over ``warmup_steps`` optimizer steps, then linear decay
    to zero at ``total_steps``."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return factor


def train_epoch(model: torch.nn.Module, batches: list, optimizer: torch.optim.Optimizer, *,
                accum_steps: int = 1, scheduler=None) -> float:
    """One pass over ``batches``, with one optimizer step every ``accum_steps`` batches.

    Returns the mean training loss per row.
    """
    model.train()
    optimizer.zero_grad()
    total_loss, n_rows = 0.0, 0
    for step, (numeric, tokens, target) in enumerate(batches):
        logits = model(numeric, tokens)
        loss = F.binary_cross_entropy_with_logits(logits, target)
        # Divided by the size of its accumulation group (the last one may be shorter), so that
        # an optimizer step sees the group's mean gradient, not its sum.
        group_size = min(accum_steps, len(batches) - (step - step % accum_steps))
        (loss / group_size).backward()
        if (step + 1) % accum_steps == 0 or step + 1 == len(batches):
            optimizer.step()
            optimizer.zero_grad()
            if scheduler is not None:
                scheduler.step()  # the schedule is defined in optimizer steps
        total_loss += loss.item() * len(target)
        n_rows += len(target)
    return total_loss / max(n_rows, 1)


def run(cfg: TrainConfig, records: list[dict] | None = None) -> TrainResult:
    """Train, select and evaluate a model; write ``<output_dir>/<model_version>.pt``."""
    set_seed(cfg.seed)
    if records is None:
        records = make_synthetic(cfg.n_customers, cfg.months, seed=cfg.seed)
    prep = prepare(cfg, records)
    logger.info("rows: train=%d val=%d test=%d, vocab=%d", len(prep.train), len(prep.val),
                len(prep.test), prep.featurizer.vocab_size)

    model = ChurnModel(n_numeric=prep.train.numeric.shape[1], vocab_size=prep.featurizer.vocab_size,
                       embed_dim=cfg.embed_dim, hidden_size=cfg.hidden_size, dropout=cfg.dropout)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    batches_per_epoch = math.ceil(len(prep.train) / cfg.batch_size)
    total_steps = cfg.epochs * math.ceil(batches_per_epoch / cfg.accum_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_linear_decay(cfg.warmup_steps, total_steps))

    # Early stopping on the validation loss: keep the weights of the best epoch.
    best_loss, best_state, history = math.inf, None, []
    for epoch in range(cfg.epochs):
        generator = torch.Generator().manual_seed(cfg.seed + epoch)
        batches = make_batches(prep.train, prep.y_train, cfg.batch_size, generator)
        train_loss = train_epoch(model, batches, optimizer, accum_steps=cfg.accum_steps,
                                 scheduler=scheduler)
        val = evaluate(model, prep.val, prep.y_val, batch_size=cfg.eval_batch_size)
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val["log_loss"],
                        "val_auc": val["auc"]})
        logger.info("epoch %d: train_loss=%.4f val_loss=%.4f val_auc=%.3f", epoch, train_loss,
                    val["log_loss"], val["auc"])
        if val["log_loss"] < best_loss:
            best_loss, best_state = val["log_loss"], copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)

    # The threshold is chosen on validation data; the test set is only measured.
    val_scores = predict_scores(model, prep.val, cfg.eval_batch_size)
    threshold = best_threshold(prep.y_val, val_scores)
    val_metrics = evaluate(model, prep.val, prep.y_val, batch_size=cfg.eval_batch_size,
                           threshold=threshold)
    test_metrics = evaluate(model, prep.test, prep.y_test, batch_size=cfg.eval_batch_size,
                            threshold=threshold)
    logger.info("test: auc=%.3f f1=%.3f at threshold %.2f", test_metrics["auc"],
                test_metrics["f1"], threshold)

    path = save_checkpoint(Path(cfg.output_dir) / f"{cfg.model_version}.pt", model=model,
                           featurizer=prep.featurizer, threshold=threshold,
                           metrics={"val": val_metrics, "test": test_metrics},
                           config=cfg.to_dict())
    return TrainResult(model=model, featurizer=prep.featurizer, splits=prep.splits,
                       threshold=threshold, val_metrics=val_metrics, test_metrics=test_metrics,
                       checkpoint_path=path, history=history)
