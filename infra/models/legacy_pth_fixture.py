#!/usr/bin/env python3
"""Writes the legacy (non-zip) torch.save fixture that models/tests/torch_legacy.rs reads.

The state dict mimics what EfficientNet-Lite0 and CRAFT checkpoints hold: float32 weights of
several ranks, a BatchNorm `num_batches_tracked` (int64), a parameter saved as nn.Parameter, a
tensor that is a non-contiguous view, and two tensors sharing one storage at different offsets.
Pinned: torch==2.15.0 (CPU). Usage: python3 infra/models/legacy_pth_fixture.py OUT_DIR
"""
import collections
import json
import sys

import torch

torch.manual_seed(7)
base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 7.0
state = collections.OrderedDict()
state["_conv_stem.weight"] = torch.randn(4, 3, 3, 3)
state["_bn0.running_mean"] = torch.randn(4)
state["_bn0.num_batches_tracked"] = torch.tensor(123, dtype=torch.int64)
state["_fc.weight"] = torch.nn.Parameter(torch.randn(5, 4))
state["transposed"] = base.t()                 # non-contiguous view (strides 1, 6)
state["shared_a"] = base[1]                    # storage offset 6
state["shared_b"] = base[2:4]                  # same storage, offset 12
state["half"] = torch.randn(3).to(torch.float16)

out = sys.argv[1]
torch.save(state, f"{out}/legacy.pth", _use_new_zipfile_serialization=False)
expected = {
    name: {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""),
           "values": t.detach().reshape(-1).tolist()}
    for name, t in state.items()
}
with open(f"{out}/legacy.json", "w") as f:
    json.dump({"torch": torch.__version__, "tensors": expected}, f)
