#!/usr/bin/env python3
"""Write fixtures/state_dict/*: checkpoints where "which mapping is the state dict" matters.

Before ckpt-model's one rule, `ckpt convert` and `ckpt inspect`/catalog/sidecars chose the state
dict by two rules; the first three files are ones where they disagreed, the others ones where
they always agreed (and must go on agreeing). Each file's `expected.json` entry names the key
the model's weights are under and the tensor names `model.state_dict()` gives, wrappers
removed — ground truth from torch itself, not from ckpt. Deterministic (fixed seed).

    /tmp/venv/bin/python scripts/make_state_dict_fixtures.py
"""
import json
import os
from collections import OrderedDict

import torch
from torch import nn

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "state_dict")
os.makedirs(here, exist_ok=True)
torch.manual_seed(3)


def net():
    return nn.Sequential(OrderedDict([
        ("stem", nn.Conv2d(3, 4, 3)),
        ("bn", nn.BatchNorm2d(4)),
        ("fc", nn.Linear(4, 2)),
    ]))


def ema_of(sd):
    return OrderedDict((k, v.clone() * 0.5) for k, v in sd.items())


def prefixed(sd, p):
    return OrderedDict((p + k, v) for k, v in sd.items())


def adam_state(model):
    opt = torch.optim.Adam(model.parameters())
    return opt.state_dict()


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)


expected = {}


def save(name, obj, key, model_sd, why):
    torch.save(obj, os.path.join(here, name))
    expected[name] = {
        "state_dict_key": key,
        "tensors": sorted(model_sd.keys()),
        "why": why,
    }


m = net()
sd = m.state_dict()

# 1. Lightning-shaped, with an EMA copy saved *before* the trained weights (an EMA callback or a
#    user's on_save_checkpoint adding `ema_state_dict`). inspect took the first mapping (EMA),
#    convert the well-known `state_dict`.
save("ema_first.ckpt", {
    "epoch": 4,
    "global_step": 40,
    "pytorch-lightning_version": "2.6.6",
    "ema_state_dict": ema_of(sd),
    "state_dict": prefixed(sd, "model."),
    "optimizer_states": [adam_state(m)],
    "lr_schedulers": [],
}, "state_dict", prefixed(sd, "model."), "EMA copy before the trained weights")

# 2. A pickled nn.Module under `model` beside a tensor dict (YOLO-style `{"model": model,
#    "ema": ...}`): inspect listed mappings before modules, so it took `ema`; convert `model`.
h = Head()
save("module_beside_ema.pt", {
    "epoch": 1,
    "ema": ema_of(h.state_dict()),
    "model": h,
}, "model", h.state_dict(), "pickled module under a well-known key beside an EMA mapping")

# 3. No well-known key: a small normalization mapping before the weights. inspect took the first
#    mapping (2 tensors), convert the largest.
save("stats_before_weights.pt", {
    "normalizer": {"mean": torch.zeros(3), "std": torch.ones(3)},
    "generator": sd,
}, "generator", sd, "no well-known key; a small mapping first")

# 4. No well-known key, an EMA copy as large as the weights and first: the EMA copy is not the
#    model's (convert took the last of equal size, inspect the first).
save("ema_and_student.pt", {
    "teacher_ema": ema_of(sd),
    "student": sd,
}, "student", sd, "EMA copy and weights of equal size, EMA first")

# 5. DDP/FSDP trainer layout `{"model": ..., "optimizer": ...}` with `module.` names.
save("ddp_model_optimizer.pth", {
    "model": prefixed(sd, "module."),
    "optimizer": adam_state(m),
    "epoch": 2,
}, "model", prefixed(sd, "module."), "DDP: module. prefixes under model, optimizer beside")

# 6. FSDP full state dict with `_fsdp_wrapped_module.` at the root and inside, and
#    `_checkpoint_wrapped_module.` (activation checkpointing), under `model`.
fsdp = OrderedDict()
for k, v in sd.items():
    fsdp["_fsdp_wrapped_module." + k.replace("fc.", "fc._fsdp_wrapped_module._checkpoint_wrapped_module.")] = v
save("fsdp_wrapped.pt", {"model": fsdp, "epoch": 0}, "model", fsdp,
     "FSDP and activation-checkpoint wrappers at the root and inside")

# 7. A bare state dict of a torch.compile'd model (`_orig_mod.` prefixes).
compiled = prefixed(sd, "_orig_mod.")
save("bare_compiled.pt", compiled, "", compiled, "bare state dict, _orig_mod. prefixes")

with open(os.path.join(here, "expected.json"), "w") as f:
    json.dump({"torch": torch.__version__, "files": expected}, f, indent=1, sort_keys=True)
    f.write("\n")
print("wrote", len(expected), "fixtures to", here)
