"""A tiny Lightning training run for test_lightning.py: in-process, as a script (DDP launches
it again per rank), and as a Hydra app (``hydra_app.py``). CPU only, a few steps, seconds.

``CKPT_TEST_LIGHTNING=pytorch_lightning`` runs it on the ``pytorch_lightning`` namespace
(default ``lightning.pytorch``).

Script use: ``python lightning_app.py ROOT [--ddp] [--epochs N]`` — trains with top-k 2 +
save_last and writes ``ROOT/logged.json`` (what the run logged at each save) from rank 0.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Any, Dict, List, Optional

import torch
from torch.utils.data import DataLoader, TensorDataset


def namespace() -> Any:
    return importlib.import_module(os.environ.get("CKPT_TEST_LIGHTNING", "lightning.pytorch"))


L = namespace()


def classes(ns: Any) -> tuple:
    """The tiny model and the recorder as classes of the Lightning namespace ``ns``."""

    class Tiny(ns.LightningModule):
        def __init__(self, lr: float = 0.05, hidden: int = 8) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch: Any, _i: int) -> torch.Tensor:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self(x), y)
            self.log("train_loss", loss, on_step=True, on_epoch=True)
            return loss

        def validation_step(self, batch: Any, _i: int) -> None:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self(x), y)
            self.log("val_loss", loss, sync_dist=True)
            self.log("val_score", 1.0 / (1.0 + loss), sync_dist=True)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    class Recorder(ns.Callback):
        """What the run logged at each save: epoch, step and metrics, keyed by (epoch, step) —
        recorded in ``on_save_checkpoint``, which Lightning calls for every file it writes."""

        def __init__(self) -> None:
            self.saves: Dict[str, Dict[str, Any]] = {}

        def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: Dict[str, Any]) -> None:
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
            self.saves[f"{checkpoint['epoch']}/{checkpoint['global_step']}"] = {
                "epoch": checkpoint["epoch"],
                "global_step": checkpoint["global_step"],
                "metrics": metrics,
            }

        def dump(self, path: str) -> None:
            with open(path, "w") as f:
                json.dump(self.saves, f, indent=1, sort_keys=True)

    return Tiny, Recorder


Tiny, Recorder = classes(L)


def loaders(n: int = 16, batch: int = 4) -> tuple:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    y = x.sum(dim=1, keepdim=True)
    ds = TensorDataset(x, y)
    return DataLoader(ds, batch_size=batch), DataLoader(ds, batch_size=batch)


def trainer(root: str, *, epochs: int, callbacks: List[Any], ns: Any = L, **kw: Any) -> Any:
    opts: Dict[str, Any] = dict(
        default_root_dir=root,
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=ns.loggers.CSVLogger(root, name="csv"),
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    opts.update(kw)
    return ns.Trainer(**opts)


def main(argv: Optional[List[str]] = None) -> None:
    from ckpt.lightning import MetadataCallback

    args = list(sys.argv[1:] if argv is None else argv)
    root = args[0]
    ddp = "--ddp" in args
    epochs = int(args[args.index("--epochs") + 1]) if "--epochs" in args else 3
    rec = Recorder()
    mc = L.callbacks.ModelCheckpoint(
        dirpath=os.path.join(root, "checkpoints"),
        filename="{epoch:02d}-{val_loss:.4f}",
        monitor="val_loss",
        mode="min",
        save_top_k=2,
        save_last=True,
    )
    cb = MetadataCallback()
    kw: Dict[str, Any] = {}
    if ddp:
        kw = dict(strategy="ddp", devices=2, num_nodes=1)
    t = trainer(root, epochs=epochs, callbacks=[mc, cb, rec], **kw)
    train, val = loaders()
    t.fit(Tiny(), train, val)
    if t.is_global_zero:
        rec.dump(os.path.join(root, f"logged-rank{t.global_rank}.json"))
        with open(os.path.join(root, "timings.json"), "w") as f:
            json.dump({**cb.timings, "world_size": t.world_size}, f)


if __name__ == "__main__":
    main()
