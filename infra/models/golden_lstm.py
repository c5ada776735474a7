#!/usr/bin/env python3
"""Writes the golden bidirectional-LSTM outputs that operators/src/models/lstm.rs tests against.

Reference implementation: `torch.nn.LSTM(8, 6, bidirectional=True, batch_first=True)` of
torch==2.15.0 on CPU, its parameters drawn by torch's default initialisation after
`torch.manual_seed(0)`, on a 2x5x8 input drawn from the same generator. Writes the eight
parameters (names as in the state dict) and the 2x5x12 output.

Usage: python3 infra/models/golden_lstm.py models/tests/golden/lstm.json
"""
import json
import sys

import torch


def main(out: str) -> None:
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(8, 6, bidirectional=True, batch_first=True).eval()
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        y, _ = lstm(x)
    golden = {
        "source": "infra/models/golden_lstm.py",
        "versions": {"torch": torch.__version__},
        "input_size": 8,
        "hidden_size": 6,
        "params": {k: v.flatten().tolist() for k, v in lstm.state_dict().items()},
        "input": x.flatten().tolist(),
        "input_shape": list(x.shape),
        "output": y.flatten().tolist(),
        "output_shape": list(y.shape),
    }
    with open(out, "w") as f:
        json.dump(golden, f)


if __name__ == "__main__":
    main(sys.argv[1])
