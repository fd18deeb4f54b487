"""Public smoke tests: the pipeline runs end to end on tiny synthetic data and the trained
model serves a request."""
from __future__ import annotations

import dataclasses

from churnsvc.config import TrainConfig
from churnsvc.serve import ChurnPredictor
from churnsvc.train import run


def test_train_then_serve(tmp_path):
    cfg = dataclasses.replace(TrainConfig(), n_customers=60, months=4, epochs=2,
                              output_dir=str(tmp_path / "artifacts"))
    result = run(cfg)
    assert result.checkpoint_path.exists()
    assert 0.0 <= result.test_metrics["auc"] <= 1.0

    record = dict(result.splits.test[0])
    record.pop("churned_next_month")
    response = ChurnPredictor(cfg.output_dir).predict(record)
    assert response["customer_id"] == record["customer_id"]
    assert 0.0 <= response["churn_probability"] <= 1.0
    assert response["model_version"] == "v1"

