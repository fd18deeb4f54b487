"""One test per planted production risk: each fails on the code as handed out and passes once
that risk is fixed (whatever else is fixed too). They test behaviour, not source text."""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import _fixed


def _small_config(tmp_path, **changes):
    from churnsvc.config import TrainConfig

    values = dict(n_customers=60, months=4, epochs=2, batch_size=16, accum_steps=2,
                  warmup_steps=2, output_dir=str(tmp_path / "artifacts"))
    values.update(changes)
    return dataclasses.replace(TrainConfig(), **values)


# --------------------------------------------------------------------------- leakage


def test_normalisation_fitted_on_training_rows_only(tmp_path):
    from churnsvc.train import prepare

    recs = _fixed.records(60, 4, seed=11)
    prep = prepare(_small_config(tmp_path), recs)
    train = np.asarray(prep.train.numeric, dtype=np.float64)
    val = np.asarray(prep.val.numeric, dtype=np.float64)
    # Statistics from the training rows (or, at most, training and validation rows) give the
    # transformed training rows a mean of 0; statistics that saw the test rows do not.
    train_mean = np.abs(train.mean(axis=0)).max()
    train_val_mean = np.abs(np.concatenate([train, val]).mean(axis=0)).max()
    assert min(train_mean, train_val_mean) < 1e-4, (train_mean, train_val_mean)


def test_validation_split_keeps_each_customer_in_one_split():
    from churnsvc.data import split_records

    recs = _fixed.records(60, 4, seed=12)
    splits = split_records(recs, test_percent=20, val_fraction=0.2, seed=3)
    parts = {"train": splits.train, "val": splits.val, "test": splits.test}
    assert sum(len(p) for p in parts.values()) == len(recs)
    assert sorted((r["customer_id"], r["snapshot_month"]) for p in parts.values() for r in p) == \
        sorted((r["customer_id"], r["snapshot_month"]) for r in recs)
    assert splits.val and splits.train
    customers = {name: {r["customer_id"] for r in p} for name, p in parts.items()}
    assert not customers["train"] & customers["val"], "customers in both train and val"
    assert not customers["train"] & customers["test"], "customers in both train and test"
    assert not customers["val"] & customers["test"], "customers in both val and test"


def test_threshold_does_not_depend_on_test_labels(tmp_path):
    from churnsvc.train import run

    recs = _fixed.records(60, 4, seed=13)
    first = run(_small_config(tmp_path / "a"), copy.deepcopy(recs))
    test_customers = {r["customer_id"] for r in first.splits.test}
    assert test_customers
    flipped = copy.deepcopy(recs)
    for r in flipped:
        if r["customer_id"] in test_customers:
            r["churned_next_month"] = 1 - r["churned_next_month"]
    second = run(_small_config(tmp_path / "b"), flipped)
    assert abs(first.threshold - second.threshold) < 1e-9, (first.threshold, second.threshold)


# --------------------------------------------------------------------------- skew and reproducibility


def test_serving_features_match_training_features(tmp_path):
    from churnsvc.checkpoint import load_checkpoint, restore
    from churnsvc.model import to_tensors
    from churnsvc.serve import ChurnPredictor

    model_dir = _fixed.write_model_dir(tmp_path / "models")
    model, featurizer = restore(load_checkpoint(model_dir / "v1.pt"))
    model.eval()
    for text in ("Billing ERROR, refund requested... slow internet! Cancel contract?",
                 "thanks: router upgrade (question about invoice)"):
        req = _fixed.request(last_ticket=text)
        with torch.no_grad():
            want = float(torch.sigmoid(model(*to_tensors(featurizer.transform([req]))))[0])
        got = ChurnPredictor(model_dir).predict(req)["churn_probability"]
        assert abs(got - want) < 1e-5, (text, got, want)


_VOCAB_CHILD = """
import json, sys
from churnsvc.features import Featurizer
records = json.load(sys.stdin)
featurizer = Featurizer(max_tokens=8, min_token_count=1).fit(records)
print(json.dumps(featurizer.transform(records).tokens.tolist()))
"""


def test_token_ids_do_not_depend_on_the_process():
    recs = _fixed.records(20, 2, seed=14)
    path = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
    outputs = []
    for hash_seed in ("0", "1", "2", "3"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=path)
        proc = subprocess.run([sys.executable, "-c", _VOCAB_CHILD], input=json.dumps(recs),
                              env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outputs.append(json.loads(proc.stdout))
    assert all(out == outputs[0] for out in outputs[1:]), "token ids change with PYTHONHASHSEED"


# --------------------------------------------------------------------------- training


def test_gradient_accumulation_matches_one_large_batch():
    from churnsvc.train import train_epoch

    batches = _fixed.batches(8, 4, seed=15)
    model = _fixed.TinyNet(seed=15)
    ref = copy.deepcopy(model)
    train_epoch(model, batches, torch.optim.SGD(model.parameters(), lr=0.5), accum_steps=4)

    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.5)
    for group in (batches[:4], batches[4:]):
        ref_opt.zero_grad()
        logits = torch.cat([ref(n, t) for n, t, _ in group])
        F.binary_cross_entropy_with_logits(logits, torch.cat([y for _, _, y in group])).backward()
        ref_opt.step()
    for (name, got), want in zip(model.named_parameters(), ref.parameters()):
        assert torch.allclose(got, want, atol=1e-5), name


class _RecordingSGD(torch.optim.SGD):
    def __init__(self, params, lr):
        super().__init__(params, lr=lr)
        self.lrs = []

    def step(self, closure=None):
        self.lrs.append(self.param_groups[0]["lr"])
        return super().step(closure)


def test_scheduler_steps_once_per_optimizer_step():
    from churnsvc.train import train_epoch

    model = _fixed.TinyNet(seed=16)
    optimizer = _RecordingSGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    train_epoch(model, _fixed.batches(12, 4, seed=16), optimizer, accum_steps=4,
                scheduler=scheduler)
    assert optimizer.lrs == pytest.approx([1.0, 1 / 2, 1 / 3]), optimizer.lrs
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1 / 4)


# --------------------------------------------------------------------------- evaluation


def test_scoring_runs_the_model_in_eval_mode():
    from churnsvc.evaluate import evaluate, predict_scores
    from churnsvc.features import FeatureBatch

    numeric, tokens, labels = _fixed.feature_arrays(40, seed=17)
    features = FeatureBatch(numeric=numeric, tokens=tokens)
    model = _fixed.TinyNet(dropout=0.5, seed=17)
    want = _fixed.eval_scores(model, numeric, tokens)

    got = predict_scores(copy.deepcopy(model).train(), features, batch_size=16)
    assert np.allclose(np.asarray(got, dtype=np.float64), want, atol=1e-6)

    in_train_mode = evaluate(copy.deepcopy(model).train(), features, labels, batch_size=1000)
    in_eval_mode = evaluate(copy.deepcopy(model).eval(), features, labels, batch_size=1000)
    for key in ("log_loss", "auc", "accuracy", "f1"):
        assert in_train_mode[key] == pytest.approx(in_eval_mode[key], abs=1e-6), key


def test_log_loss_does_not_depend_on_the_batch_size():
    from churnsvc.evaluate import evaluate
    from churnsvc.features import FeatureBatch

    numeric, tokens, labels = _fixed.feature_arrays(30, seed=18)
    features = FeatureBatch(numeric=numeric, tokens=tokens)
    model = _fixed.TinyNet(seed=18).eval()
    whole = evaluate(model, features, labels, batch_size=1000)["log_loss"]
    for batch_size in (7, 4):
        batched = evaluate(model, features, labels, batch_size=batch_size)["log_loss"]
        assert batched == pytest.approx(whole, rel=1e-5), (batch_size, batched, whole)


# --------------------------------------------------------------------------- reliability


def test_interrupted_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch):
    from churnsvc.checkpoint import load_checkpoint, save_checkpoint
    from churnsvc.features import Featurizer
    from churnsvc.model import ChurnModel

    featurizer = Featurizer(max_tokens=8, min_token_count=1).fit(_fixed.records(10, 2, seed=19))
    model = ChurnModel(n_numeric=5, vocab_size=featurizer.vocab_size, embed_dim=4, hidden_size=8)
    path = tmp_path / "models" / "v1.pt"
    save_checkpoint(path, model=model, featurizer=featurizer, threshold=0.25)

    def crash_mid_write(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)):
            with open(f, "wb") as handle:
                handle.write(b"PK\x03\x04 partial")
        else:
            f.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", crash_mid_write)
    try:
        save_checkpoint(path, model=model, featurizer=featurizer, threshold=0.75)
    except OSError:
        pass
    monkeypatch.undo()
    assert load_checkpoint(path)["threshold"] == pytest.approx(0.25)


def test_malformed_request_is_rejected(tmp_path):
    from churnsvc.serve import ChurnPredictor

    predictor = ChurnPredictor(_fixed.write_model_dir(tmp_path / "models"))
    missing = _fixed.request()
    del missing["monthly_charges"]
    for bad in (missing, _fixed.request(tenure_months="fourteen")):
        with pytest.raises((ValueError, KeyError, TypeError)):
            predictor.predict(bad)


# --------------------------------------------------------------------------- security and privacy


class _Plant:
    """Unpickling this creates a directory: evidence that a file was unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_request_cannot_load_a_file_outside_the_model_dir(tmp_path):
    from churnsvc.serve import ChurnPredictor

    model_dir = _fixed.write_model_dir(tmp_path / "models")
    marker = tmp_path / "payload-ran"
    torch.save({"format_version": 1, "model_state": _Plant(marker)}, tmp_path / "upload.pt")
    predictor = ChurnPredictor(model_dir)
    for version in ("../upload", str(tmp_path / "upload")):
        try:
            predictor.predict(_fixed.request(model_version=version))
        except Exception:
            pass
    assert not marker.exists(), "a request made the service unpickle a file of its choosing"


def test_personal_data_is_not_logged(tmp_path, caplog):
    from churnsvc.serve import ChurnPredictor

    predictor = ChurnPredictor(_fixed.write_model_dir(tmp_path / "models"))
    caplog.set_level(logging.DEBUG)
    response = predictor.predict(_fixed.request())
    assert 0.0 <= response["churn_probability"] <= 1.0
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    for value in _fixed.PERSON.values():
        assert value not in logged, f"{value!r} appears in the logs"
