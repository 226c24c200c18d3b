"""A Hydra app training the tiny model of lightning_app.py with ckpt's MetadataCallback
(test_lightning.py runs it as a subprocess, once and with ``--multirun``)."""

from __future__ import annotations

import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lightning_app as app  # noqa: E402


@hydra.main(version_base=None, config_path="hydra_conf", config_name="train")
def main(cfg: DictConfig) -> None:
    from ckpt.lightning import MetadataCallback

    hc = HydraConfig.get()
    out = hc.runtime.output_dir
    if cfg.outside:
        dirpath = os.path.join(cfg.outside, str(hc.job.get("num", 0)))
    else:
        dirpath = os.path.join(out, "checkpoints")
    mc = app.L.callbacks.ModelCheckpoint(
        dirpath=dirpath,
        filename="{epoch:02d}",
        monitor=cfg.checkpoint.monitor,
        mode=cfg.checkpoint.mode,
        save_top_k=cfg.checkpoint.save_top_k,
        save_last=cfg.checkpoint.save_last,
    )
    rec = app.Recorder()
    t = app.trainer(out, epochs=cfg.epochs, callbacks=[mc, MetadataCallback(), rec])
    train, val = app.loaders()
    t.fit(app.Tiny(lr=cfg.lr, hidden=cfg.model.hidden), train, val)
    rec.dump(os.path.join(out, "logged.json"))


if __name__ == "__main__":
    main()
