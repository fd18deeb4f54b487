"""Command line: ``python -m churnsvc train ...`` and ``python -m churnsvc score ...``."""
from __future__ import annotations

import argparse
import json
import logging
import sys

from .config import load_config
from .data import read_jsonl


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="churnsvc")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model and write its checkpoint")
    train.add_argument("--config", help="JSON file with TrainConfig overrides")
    train.add_argument("--data", help="JSONL snapshot records (default: synthetic data)")
    train.add_argument("--output-dir")

    score = sub.add_parser("score", help="score JSON requests, one per line of a file or stdin")
    score.add_argument("requests", nargs="?", default="-")
    score.add_argument("--model-dir", default="artifacts")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    if args.command == "train":
        from .train import run

        overrides = {"output_dir": args.output_dir} if args.output_dir else {}
        cfg = load_config(args.config, **overrides)
        records = read_jsonl(args.data) if args.data else None
        result = run(cfg, records)
        print(json.dumps({"checkpoint": str(result.checkpoint_path), "threshold": result.threshold,
                          "test": result.test_metrics}, indent=2))
        return 0

    from .serve import ChurnPredictor

    predictor = ChurnPredictor(args.model_dir)
    stream = sys.stdin if args.requests == "-" else open(args.requests, encoding="utf-8")
    with stream:
        for line in stream:
            if line.strip():
                print(json.dumps(predictor.predict(json.loads(line))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
