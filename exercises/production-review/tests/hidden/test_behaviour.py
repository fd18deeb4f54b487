"""The service's documented behaviour, which any fix must keep: it trains, evaluates, saves
and loads checkpoints, and serves with the same API and output shapes. These pass on the code
as handed out; a patch counts as a fix only while they still pass."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import _fixed

METRIC_KEYS = {"log_loss", "auc", "accuracy", "precision", "recall", "f1", "threshold", "n"}


def _config(tmp_path, **changes):
    from churnsvc.config import TrainConfig

    values = dict(n_customers=60, months=4, epochs=2, batch_size=16, accum_steps=2,
                  warmup_steps=2, output_dir=str(tmp_path / "artifacts"))
    values.update(changes)
    return dataclasses.replace(TrainConfig(), **values)


def test_pipeline_trains_evaluates_and_writes_a_checkpoint(tmp_path):
    from churnsvc.train import run

    recs = _fixed.records(60, 4, seed=21)
    result = run(_config(tmp_path), recs)
    assert result.checkpoint_path.exists()
    assert result.checkpoint_path.name == "v1.pt"
    assert 0.0 < result.threshold < 1.0
    assert METRIC_KEYS <= set(result.test_metrics) and METRIC_KEYS <= set(result.val_metrics)
    assert result.test_metrics["n"] == len(result.splits.test)
    assert len(result.history) == 2
    assert all(math.isfinite(h["train_loss"]) for h in result.history)
    n = len(result.splits.train) + len(result.splits.val) + len(result.splits.test)
    assert n == len(recs)


def test_trained_model_ranks_better_than_chance(tmp_path):
    from churnsvc.train import run

    result = run(_config(tmp_path, n_customers=300, months=6, epochs=6, batch_size=32))
    assert result.test_metrics["auc"] > 0.65, result.test_metrics


def test_checkpoint_round_trip(tmp_path):
    from churnsvc.checkpoint import load_checkpoint, restore, save_checkpoint
    from churnsvc.features import Featurizer
    from churnsvc.model import ChurnModel, to_tensors

    recs = _fixed.records(20, 2, seed=22)
    featurizer = Featurizer(max_tokens=8, min_token_count=1).fit(recs)
    torch.manual_seed(22)
    model = ChurnModel(n_numeric=5, vocab_size=featurizer.vocab_size, embed_dim=4, hidden_size=8)
    path = save_checkpoint(tmp_path / "m" / "v3.pt", model=model, featurizer=featurizer,
                           threshold=0.4, metrics={"test": {"auc": 0.8}}, config={"seed": 1})
    assert path.exists()
    checkpoint = load_checkpoint(path)
    assert checkpoint["threshold"] == pytest.approx(0.4)
    assert checkpoint["metrics"] == {"test": {"auc": 0.8}}
    loaded_model, loaded_featurizer = restore(checkpoint)
    assert not loaded_model.training
    want = featurizer.transform(recs)
    got = loaded_featurizer.transform(recs)
    assert np.array_equal(got.tokens, want.tokens)
    assert np.allclose(got.numeric, want.numeric)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded_model(*to_tensors(got)), model(*to_tensors(want)))


def test_featurizer_shapes_and_dtypes():
    from churnsvc.features import Featurizer

    recs = _fixed.records(10, 2, seed=23)
    recs[0]["last_ticket"] = ""
    batch = Featurizer(max_tokens=6, min_token_count=1).fit(recs).transform(recs)
    assert len(batch) == len(recs)
    assert batch.numeric.shape == (len(recs), 5) and batch.numeric.dtype == np.float32
    assert batch.tokens.shape == (len(recs), 6) and batch.tokens.dtype == np.int64
    assert (batch.tokens[0] == 0).all()
    assert (batch.tokens[1:, 0] >= 2).all()


def test_evaluate_on_one_batch_matches_the_definitions():
    from churnsvc.evaluate import evaluate, predict_scores
    from churnsvc.features import FeatureBatch

    numeric, tokens, labels = _fixed.feature_arrays(25, seed=24)
    model = _fixed.TinyNet(seed=24).eval()
    features = FeatureBatch(numeric=numeric, tokens=tokens)
    scores = _fixed.eval_scores(model, numeric, tokens)
    assert np.allclose(predict_scores(model, features, batch_size=100), scores, atol=1e-6)

    out = evaluate(model, features, labels, batch_size=100, threshold=0.5)
    assert METRIC_KEYS <= set(out)
    with torch.no_grad():
        logits = model(torch.from_numpy(numeric), torch.from_numpy(tokens))
    want_loss = F.binary_cross_entropy_with_logits(logits, torch.from_numpy(labels)).item()
    assert out["log_loss"] == pytest.approx(want_loss, rel=1e-5)
    predicted = scores >= 0.5
    truth = labels.astype(bool)
    assert out["accuracy"] == pytest.approx(float(np.mean(predicted == truth)))
    pos, neg = scores[truth], scores[~truth]
    want_auc = float(np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])))
    assert out["auc"] == pytest.approx(want_auc, abs=1e-9)
    assert out["n"] == 25 and out["threshold"] == 0.5


def test_best_threshold_maximises_f1():
    from churnsvc.evaluate import best_threshold

    labels = np.array([0, 0, 0, 1, 1, 1, 0, 1], dtype=np.float32)
    scores = np.array([0.1, 0.2, 0.3, 0.62, 0.7, 0.8, 0.58, 0.9])
    assert best_threshold(labels, scores) == pytest.approx(0.6)


def test_train_epoch_updates_the_model_and_returns_the_mean_loss():
    from churnsvc.train import train_epoch

    model = _fixed.TinyNet(seed=25)
    before = [p.detach().clone() for p in model.parameters()]
    loss = train_epoch(model, _fixed.batches(6, 5, seed=25),
                       torch.optim.SGD(model.parameters(), lr=0.1), accum_steps=2)
    assert isinstance(loss, float) and math.isfinite(loss) and loss > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_split_covers_every_record_and_keeps_test_customers_apart():
    from churnsvc.data import split_records

    recs = _fixed.records(50, 3, seed=26)
    splits = split_records(recs, test_percent=25, val_fraction=0.2, seed=1)
    keys = sorted((r["customer_id"], r["snapshot_month"]) for part in
                  (splits.train, splits.val, splits.test) for r in part)
    assert keys == sorted((r["customer_id"], r["snapshot_month"]) for r in recs)
    test_customers = {r["customer_id"] for r in splits.test}
    assert test_customers and not test_customers & {r["customer_id"] for r in splits.train + splits.val}
    again = split_records(recs, test_percent=25, val_fraction=0.2, seed=1)
    assert [r["snapshot_month"] + r["customer_id"] for r in again.test] == \
        [r["snapshot_month"] + r["customer_id"] for r in splits.test]


def test_predict_response(tmp_path):
    from churnsvc.serve import ChurnPredictor

    predictor = ChurnPredictor(_fixed.write_model_dir(tmp_path / "models", threshold=0.5))
    response = predictor.predict(_fixed.request())
    assert set(response) == {"customer_id", "churn_probability", "churn", "model_version"}
    assert response["customer_id"] == "K-0042"
    assert isinstance(response["churn_probability"], float)
    assert 0.0 <= response["churn_probability"] <= 1.0
    assert response["churn"] == (response["churn_probability"] >= 0.5)
    assert response["model_version"] == "v1"


def test_predict_uses_the_pinned_model_version(tmp_path):
    from churnsvc.serve import ChurnPredictor

    model_dir = _fixed.write_model_dir(tmp_path / "models", version="v1", threshold=0.0)
    _fixed.write_model_dir(model_dir, version="v2-canary", threshold=1.01)
    predictor = ChurnPredictor(model_dir)
    default = predictor.predict(_fixed.request())
    pinned = predictor.predict(_fixed.request(model_version="v2-canary"))
    assert (default["model_version"], default["churn"]) == ("v1", True)
    assert (pinned["model_version"], pinned["churn"]) == ("v2-canary", False)


def test_module_level_predict_reads_the_model_dir_from_the_environment(tmp_path, monkeypatch):
    from churnsvc import serve

    model_dir = _fixed.write_model_dir(tmp_path / "models")
    monkeypatch.setenv("CHURNSVC_MODEL_DIR", str(model_dir))
    monkeypatch.setattr(serve, "_predictor", None, raising=False)
    response = serve.predict(_fixed.request())
    assert response["model_version"] == "v1"
    assert 0.0 <= response["churn_probability"] <= 1.0
