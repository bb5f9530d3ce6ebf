#!/usr/bin/env python3
"""Train a tiny logistic-regression model and push it with its metrics, params and lineage.

Pure Python (no numpy needed) so it runs anywhere ocimodel does:

    python examples/train_and_push.py localhost:5000/models/churn:1.0 --plain-http

The weights are written as safetensors (a safe, pickle-free format); the dataset is
generated from a fixed seed and its sha256 recorded as lineage, so the push is traceable.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import struct
import tempfile
from pathlib import Path

import ocimodel
from ocimodel.transfer.gitinfo import detect_code

FEATURES = ["tenure_months", "monthly_charges", "support_calls"]


def make_dataset(rows: int, seed: int) -> list[tuple[list[float], int]]:
    """A synthetic churn dataset: churn grows with charges and calls, falls with tenure."""
    rng = random.Random(seed)
    data = []
    for _ in range(rows):
        x = [rng.uniform(0, 1) for _ in FEATURES]
        score = -2.5 * x[0] + 2.0 * x[1] + 3.0 * x[2] - 1.0 + rng.gauss(0, 0.3)
        data.append((x, int(score > 0)))
    return data


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-max(-60.0, min(60.0, z))))


def train(data: list[tuple[list[float], int]], epochs: int, lr: float) -> tuple[list[float], float]:
    """Batch gradient descent on the log loss."""
    w, b = [0.0] * len(FEATURES), 0.0
    for _ in range(epochs):
        gw, gb = [0.0] * len(w), 0.0
        for x, y in data:
            err = sigmoid(sum(wi * xi for wi, xi in zip(w, x)) + b) - y
            gw = [g + err * xi for g, xi in zip(gw, x)]
            gb += err
        w = [wi - lr * g / len(data) for wi, g in zip(w, gw)]
        b -= lr * gb / len(data)
    return w, b


def accuracy(data: list[tuple[list[float], int]], w: list[float], b: float) -> float:
    hits = sum(int((sigmoid(sum(wi * xi for wi, xi in zip(w, x)) + b) > 0.5) == bool(y)) for x, y in data)
    return hits / len(data)


def write_safetensors(path: Path, tensors: dict[str, list[float]]) -> None:
    """Minimal safetensors writer: 8-byte header length, JSON header, little-endian f32 data."""
    header: dict[str, object] = {}
    payload = b""
    for name, values in tensors.items():
        data = struct.pack(f"<{len(values)}f", *values)
        header[name] = {"dtype": "F32", "shape": [len(values)], "data_offsets": [len(payload), len(payload) + len(data)]}
        payload += data
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + payload)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ref", help="where to push, e.g. localhost:5000/models/churn:1.0")
    parser.add_argument("--plain-http", action="store_true")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--lr", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--parent", action="append", default=[], help="model this one was fine-tuned from")
    parser.add_argument("--run-id", default=None)
    args = parser.parse_args()

    data = make_dataset(600, args.seed)
    train_set, test_set = data[:480], data[480:]
    w, b = train(train_set, args.epochs, args.lr)
    acc = accuracy(test_set, w, b)

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "churn-model"
        model_dir.mkdir()
        write_safetensors(model_dir / "model.safetensors", {"weight": w, "bias": [b]})
        (model_dir / "config.json").write_text(json.dumps({"features": FEATURES, "threshold": 0.5}, indent=2))
        dataset_bytes = json.dumps(data).encode()
        result = ocimodel.push(
            model_dir,
            args.ref,
            description="Logistic-regression churn model (pure Python example)",
            framework="python",
            format="safetensors",
            license="Apache-2.0",
            metrics={"accuracy": round(acc, 4), "test_rows": len(test_set)},
            params={"epochs": args.epochs, "learning_rate": args.lr, "seed": args.seed},
            datasets=[f"synthetic://churn?rows=600&seed={args.seed}@sha256:{hashlib.sha256(dataset_bytes).hexdigest()}"],
            parents=args.parent,
            run_id=args.run_id,
            labels={"task": "churn"},
            # The model is written to a temp dir: record the checkout this script runs from.
            code=detect_code(Path(__file__).resolve().parent) or False,
            connection=ocimodel.Connection(plain_http=args.plain_http),
        )
    print(json.dumps({"digest": result.digest, "accuracy": acc}))


if __name__ == "__main__":
    main()
