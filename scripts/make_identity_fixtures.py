#!/usr/bin/env python3
"""Generate the experiment-identity fixtures (`ckpt hash`, issue 6).

    /tmp/venv/bin/python scripts/make_identity_fixtures.py        # from anywhere; needs torch

Writes (and first deletes) only fixtures/identity/:

    checkpoints/<hash>/model/checkpoint_step_{000000,000100,000200}.pt
                                   weightslab-style hash folders: a tiny MLP's weights per step
                                   (`model_state_dict` + `optimizer_state_dict`), the pickled
                                   nn.Module once (`architecture.pt`), hp/config.yaml,
                                   data/active_uids.txt
    checkpoints/3c5e7a9b1d2f/      fc1 is 8 wide
    checkpoints/8e6c4a2f0b1d/      identical except fc1 is 16 wide (architecture differs only)
    wrapped/ddp_step_000300.pt     the 8-wide model's state dict with DDP `module.` prefixes under
                                   `state_dict`, and `hyper_parameters` in the checkpoint (the
                                   same values as hp/config.yaml)
    hydra_run/checkpoints/last.pt  the 8-wide model, no hyper_parameters: the hparams come from
    hydra_run/.hydra/config.yaml   the run's Hydra config
    hydra_run/checkpoints/with_hparams.pt
                                   the same with the Hydra config in `hyper_parameters`, its
                                   `${...}` references unresolved
    hparams_reordered.yaml         hp/config.yaml's values, keys reordered, numbers re-spelled
    hparams.json                   the same values as JSON
    hparams_changed_lr.yaml        learning_rate changed, nothing else
    uids_shuffled.txt              the active UIDs shuffled, one duplicated, blank lines, spaces
    uids_one_fewer.txt             one UID removed
    uids.json                      the active UIDs as a JSON array (shuffled)
    uids.csv                       the active UIDs as a CSV column (header `idx,uid`)
    expected.json                  identity of each case computed by this script's own
                                   implementation of algorithm v1 (independent of the Rust one;
                                   crates/ckpt-catalog/src/identity.rs checks it agrees)
    README.md

Deterministic: fixed seeds, fixed contents; re-running gives the same bytes.
"""
from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "identity"
SEED = 4321
HASH1, HASH2 = "3c5e7a9b1d2f", "8e6c4a2f0b1d"
STEPS = (0, 100, 200)

# hp/config.yaml of both experiments, as written (the values below must match it)
HP_YAML = """\
experiment_name: identity_demo
learning_rate: 0.001
weight_decay: 1.0e-05
batch_size: 32
epochs: 3
warmup_ratio: 0.0
grad_clip: 1.0
model:
  activation: relu
  depth: 2
optimizer:
  name: sgd
  momentum: 0.9
  nesterov: false
output_dir: /tmp/runs/identity_demo
"""
HP = {
    "experiment_name": "identity_demo",
    "learning_rate": 0.001,
    "weight_decay": 1e-05,
    "batch_size": 32,
    "epochs": 3,
    "warmup_ratio": 0.0,
    "grad_clip": 1.0,
    "model": {"activation": "relu", "depth": 2},
    "optimizer": {"name": "sgd", "momentum": 0.9, "nesterov": False},
    "output_dir": "/tmp/runs/identity_demo",
}

# the same values: keys reordered (both levels), numbers spelled differently, flow style
HP_REORDERED_YAML = """\
output_dir: /tmp/runs/identity_demo
optimizer: {nesterov: false, momentum: 9.0e-1, name: sgd}
model:
  depth: 2
  activation: relu
grad_clip: 1.0e0
warmup_ratio: 0.00
epochs: 3
batch_size: 32
weight_decay: 0.00001
learning_rate: 1e-3
experiment_name: identity_demo
"""

HP_CHANGED_LR_YAML = HP_YAML.replace("learning_rate: 0.001", "learning_rate: 0.002")
HP_CHANGED_LR = {**HP, "learning_rate": 0.002}

HYDRA_YAML = """\
experiment_name: identity_demo
seed: 7
trainer:
  max_epochs: 3
  accelerator: cpu
optimizer:
  lr: 0.001
  scheduled_lr: ${optimizer.lr}
paths:
  output_dir: /tmp/runs/hydra_demo/${experiment_name}
"""
HYDRA = {  # interpolations resolved, as `ckpt` reads it
    "experiment_name": "identity_demo",
    "seed": 7,
    "trainer": {"max_epochs": 3, "accelerator": "cpu"},
    "optimizer": {"lr": 0.001, "scheduled_lr": 0.001},
    "paths": {"output_dir": "/tmp/runs/hydra_demo/identity_demo"},
}

HYDRA_RAW = {**HYDRA, "optimizer": {"lr": 0.001, "scheduled_lr": "${optimizer.lr}"},  # as written
             "paths": {"output_dir": "/tmp/runs/hydra_demo/${experiment_name}"}}

UIDS = [f"sample_{i:05d}" for i in range(60) if i % 7]


# --------------------------------------------------------------------------- #
# reference implementation of identity algorithm v1 (see identity.rs's module doc)
# --------------------------------------------------------------------------- #
WRAPPERS = ["_fsdp_wrapped_module.", "_fpw_module.", "_checkpoint_wrapped_module.", "_orig_mod.",
            "module."]


def strip_wrappers(name: str) -> str:
    out, rest = "", name
    while rest:
        for p in WRAPPERS:
            here = out == "" if p == "module." else (out == "" or out.endswith("."))
            if here and rest.startswith(p):
                rest = rest[len(p):]
                break
        else:
            i = rest.find(".")
            if i < 0:
                out, rest = out + rest, ""
            else:
                out, rest = out + rest[: i + 1], rest[i + 1:]
    return out


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def arch_component(sd) -> str | None:
    rows = {}
    for k, t in sd.items():
        if isinstance(t, torch.Tensor):
            rows[strip_wrappers(k)] = (str(t.dtype).replace("torch.", ""), list(t.shape))
    if not rows:
        return None
    return sha("".join(f"{n}\t{d}\t[{','.join(map(str, s))}]\n"
                       for n, (d, s) in sorted(rows.items(), key=lambda kv: kv[0].encode())))


def drop(v, path: str):
    """Remove one dotted path (object keys; a numeric part may step into a list)."""
    parts = path.split(".")
    cur = v
    for p in parts[:-1]:
        if isinstance(cur, dict) and p in cur:
            cur = cur[p]
        elif isinstance(cur, list) and p.isdigit() and int(p) < len(cur):
            cur = cur[int(p)]
        else:
            return
    if isinstance(cur, dict):
        cur.pop(parts[-1], None)


def hp_component(hp, ignore=()) -> str | None:
    if hp is None:
        return None
    hp = json.loads(json.dumps(hp))
    if isinstance(hp, dict):
        hp.pop("model", None)  # the architecture component identifies the model
    for p in ignore:
        drop(hp, p)
    # Python's json writes floats with repr(), keys sorted by code point (= UTF-8 byte order)
    return sha(json.dumps(hp, sort_keys=True, separators=(",", ":"), ensure_ascii=False))


def data_component(uids) -> str | None:
    if uids is None:
        return None
    s = sorted({u.strip() for u in uids if u.strip()}, key=lambda u: u.encode())
    return sha("\n".join(s))


def identity(arch, hp, data) -> dict:
    comb = "v1\n" + "".join((c if c is not None else "-") + "\n" for c in (arch, hp, data))
    return {"hash": "v1:" + sha(comb)[:16],
            "components": {"architecture": arch, "hyperparameters": hp, "data": data}}


# --------------------------------------------------------------------------- #
# fixtures
# --------------------------------------------------------------------------- #
def mlp(width: int) -> nn.Module:
    return nn.Sequential(OrderedDict(fc1=nn.Linear(10, width), act=nn.ReLU(),
                                     fc2=nn.Linear(width, 2)))


def experiment(name: str, width: int) -> dict:
    d = OUT / "checkpoints" / name
    for sub in ("model", "hp", "data"):
        (d / sub).mkdir(parents=True)
    torch.manual_seed(SEED)
    net = mlp(width)
    opt = torch.optim.SGD(net.parameters(), lr=HP["learning_rate"], momentum=0.9)
    sds = {}
    for step in STEPS:
        net(torch.randn(4, 10)).sum().backward()
        opt.step()
        opt.zero_grad()
        sd = net.state_dict()
        sds[step] = sd
        torch.save({"step": step, "model_state_dict": sd,
                    "optimizer_state_dict": opt.state_dict(), "exp_hash": name},
                   d / "model" / f"checkpoint_step_{step:06d}.pt")
    torch.save(net, d / "model" / "architecture.pt")  # the module itself, pickled once
    (d / "hp" / "config.yaml").write_text(HP_YAML)
    (d / "data" / "active_uids.txt").write_text("\n".join(UIDS) + "\n")
    return sds


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    sd1 = experiment(HASH1, 8)
    sd2 = experiment(HASH2, 16)

    # DDP-wrapped copy with hyper_parameters inside (a Lightning-like dict)
    (OUT / "wrapped").mkdir()
    torch.save({"epoch": 3, "global_step": 300,
                "state_dict": OrderedDict((f"module.{k}", v) for k, v in sd1[200].items()),
                "hyper_parameters": HP},
               OUT / "wrapped" / "ddp_step_000300.pt")

    # a Hydra run: no hyper_parameters in the checkpoint
    (OUT / "hydra_run" / ".hydra").mkdir(parents=True)
    (OUT / "hydra_run" / "checkpoints").mkdir()
    (OUT / "hydra_run" / ".hydra" / "config.yaml").write_text(HYDRA_YAML)
    torch.save({"epoch": 2, "state_dict": sd1[200]}, OUT / "hydra_run" / "checkpoints" / "last.pt")
    # the same config saved into the checkpoint with its references unresolved (what a pickled
    # DictConfig holds): it must hash like the resolved file
    torch.save({"epoch": 2, "state_dict": sd1[200], "hyper_parameters": HYDRA_RAW},
               OUT / "hydra_run" / "checkpoints" / "with_hparams.pt")

    (OUT / "hparams_reordered.yaml").write_text(HP_REORDERED_YAML)
    (OUT / "hparams.json").write_text(json.dumps(dict(reversed(list(HP.items()))), indent=2) + "\n")
    (OUT / "hparams_changed_lr.yaml").write_text(HP_CHANGED_LR_YAML)

    rng = random.Random(SEED)
    shuffled = UIDS[:]
    rng.shuffle(shuffled)
    noisy = shuffled[:10] + [""] + [f"  {shuffled[10]}  "] + shuffled[10:] + [shuffled[3], ""]
    (OUT / "uids_shuffled.txt").write_text("\n".join(noisy) + "\n")
    fewer = [u for u in UIDS if u != "sample_00030"]
    (OUT / "uids_one_fewer.txt").write_text("\n".join(fewer) + "\n")
    (OUT / "uids.json").write_text(json.dumps(shuffled) + "\n")
    (OUT / "uids.csv").write_text("idx,uid\n" + "".join(f"{i},{u}\n" for i, u in enumerate(shuffled)))

    a1, a2 = arch_component(sd1[0]), arch_component(sd2[0])
    assert all(arch_component(sd1[s]) == a1 for s in STEPS)
    assert arch_component({f"module.{k}": v for k, v in sd1[0].items()}) == a1
    assert a1 != a2
    hp, data = hp_component(HP), data_component(UIDS)
    exp1 = identity(a1, hp, data)
    cases = []

    def case(name, path, want, **args):
        cases.append({"name": name, "path": path, "args": args, "identity": want})

    m1 = f"checkpoints/{HASH1}/model"
    for s in STEPS:
        case(f"exp1_step{s}", f"{m1}/checkpoint_step_{s:06d}.pt", exp1)
    case("exp1_folder", f"checkpoints/{HASH1}", exp1)
    case("exp1_model_folder", m1, exp1)
    case("exp2_folder", f"checkpoints/{HASH2}", identity(a2, hp, data))
    case("exp1_hparams_reordered", m1, exp1, hparams="hparams_reordered.yaml")
    case("exp1_hparams_json", m1, exp1, hparams="hparams.json")
    case("exp1_hparams_changed_lr", m1, identity(a1, hp_component(HP_CHANGED_LR), data),
         hparams="hparams_changed_lr.yaml")
    case("exp1_ignore_output_dir", m1, identity(a1, hp_component(HP, ["output_dir"]), data),
         ignore=["output_dir"])
    case("exp1_ignore_nested", m1,
         identity(a1, hp_component(HP, ["optimizer.nesterov", "no.such.key"]), data),
         ignore=["optimizer.nesterov", "no.such.key"])
    case("exp1_uids_shuffled", m1, exp1, data_uids="uids_shuffled.txt")
    case("exp1_uids_one_fewer", m1, identity(a1, hp, data_component(fewer)),
         data_uids="uids_one_fewer.txt")
    case("exp1_uids_json", m1, exp1, data_uids="uids.json")
    case("exp1_uids_csv", m1, exp1, data_uids="uids.csv")
    case("exp1_uids_csv_column", m1,
         identity(a1, hp, data_component([str(i) for i in range(len(shuffled))])),
         data_uids="uids.csv", uid_column="idx")
    case("wrapped_ddp", "wrapped/ddp_step_000300.pt", identity(a1, hp, None))
    case("hydra_run", "hydra_run/checkpoints/last.pt", identity(a1, hp_component(HYDRA), None))
    case("hydra_run_unresolved_hparams", "hydra_run/checkpoints/with_hparams.pt",
         identity(a1, hp_component(HYDRA), None))
    (OUT / "expected.json").write_text(json.dumps({"algorithm": "v1", "cases": cases}, indent=1)
                                       + "\n")

    (OUT / "README.md").write_text(
        "# Experiment-identity fixtures\n\n"
        "Generated by `scripts/make_identity_fixtures.py` (do not edit by hand; re-run it with\n"
        f"`/tmp/venv/bin/python scripts/make_identity_fixtures.py`). Made with torch {torch.__version__}.\n\n"
        f"- `checkpoints/{HASH1}/` and `checkpoints/{HASH2}/`: weightslab-style hash folders\n"
        "  (`model/checkpoint_step_*.pt` with `model_state_dict` + `optimizer_state_dict`,\n"
        "  `model/architecture.pt`, `hp/config.yaml`, `data/active_uids.txt`); identical except\n"
        f"  `fc1` is 8 wide in `{HASH1}` and 16 wide in `{HASH2}`.\n"
        "- `wrapped/ddp_step_000300.pt`: the 8-wide weights with DDP `module.` prefixes under\n"
        "  `state_dict`, `hyper_parameters` = hp/config.yaml's values.\n"
        "- `hydra_run/`: the 8-wide weights without hyper_parameters (`last.pt`), beside\n"
        "  `.hydra/config.yaml`; `with_hparams.pt` holds that config, references unresolved, in\n"
        "  `hyper_parameters`.\n"
        "- `hparams_reordered.yaml`, `hparams.json`: hp/config.yaml's values, keys reordered,\n"
        "  numbers re-spelled (`1e-3` for `0.001`, `9.0e-1`, `1.0e0`). `hparams_changed_lr.yaml`:\n"
        "  learning_rate 0.002.\n"
        "- `uids_shuffled.txt` (shuffled, a duplicate, blank lines, surrounding spaces),\n"
        "  `uids_one_fewer.txt` (sample_00030 removed), `uids.json`, `uids.csv` (header `idx,uid`).\n"
        "- `expected.json`: the identity of each case, computed by the generator's own Python\n"
        "  implementation of algorithm v1; the Rust tests check they agree.\n")


if __name__ == "__main__":
    main()
