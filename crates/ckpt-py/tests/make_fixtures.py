"""Write the Python tests' fixtures with real torch and Lightning (run once; outputs are
committed): a Lightning checkpoint whose `hyper_parameters` is an OmegaConf DictConfig, which
`torch.load(weights_only=True)` refuses.

    /path/to/venv/bin/python crates/ckpt-py/tests/make_fixtures.py
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from fixture_model import Net  # noqa: E402

try:
    import lightning.pytorch as pl
except ImportError:  # the older package name
    import pytorch_lightning as pl
from omegaconf import OmegaConf

OUT = os.path.join(os.path.dirname(__file__), "fixtures")


class Module(pl.LightningModule):
    def __init__(self, cfg) -> None:
        super().__init__()
        self.save_hyperparameters(cfg)
        self.net = Net()

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.optimizer.lr)


def main() -> None:
    torch.manual_seed(0)
    cfg = OmegaConf.create(
        {
            "model": {"channels": 4, "name": "net"},
            "optimizer": {"name": "adamw", "lr": 0.01, "scheduled_lr": "${optimizer.lr}"},
        }
    )
    data = torch.utils.data.TensorDataset(torch.randn(16, 3, 8, 8), torch.randint(0, 2, (16,)))
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    trainer = pl.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=OUT,
    )
    trainer.fit(Module(cfg), loader)
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "dictconfig_lightning.ckpt")
    trainer.save_checkpoint(path)
    print(path, os.path.getsize(path))


if __name__ == "__main__":
    main()
