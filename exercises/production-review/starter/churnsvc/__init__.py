"""churnsvc: monthly churn scoring for subscription accounts.

Modules:

- ``config``: training configuration and the record schema.
- ``data``: the synthetic snapshot generator, JSONL I/O and the train/val/test split.
- ``features``: the featurizer (numeric standardisation and ticket-text token ids).
- ``model``: the classifier.
- ``train``: the training pipeline (``python -m churnsvc train``).
- ``evaluate``: batched scoring, metrics and threshold selection.
- ``checkpoint``: saving and loading checkpoints.
- ``serve``: online scoring (``predict(request) -> response``).
"""

__version__ = "0.4.2"
