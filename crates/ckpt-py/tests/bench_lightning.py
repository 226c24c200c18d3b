"""What MetadataCallback costs a training run (not collected by pytest; run by hand):

    python crates/ckpt-py/tests/bench_lightning.py [EPOCHS] [ROUNDS]

A tiny model (lightning_app.Tiny, 4 steps an epoch) saves a top-k checkpoint and last.ckpt
every epoch (save_top_k=-1: every file kept, 2 saves an epoch). Runs without the callback,
with it (worker thread) and with ``background=False`` (on the training thread), interleaved;
prints the medians of fit's wall time (which includes waiting for the last sidecars at the end),
of an epoch (the training loop's own time, its two saves included) and the per-save
milliseconds the callback measured.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lightning_app as app  # noqa: E402
from ckpt.lightning import MetadataCallback  # noqa: E402


def one(epochs: int, variant: str) -> tuple:
    with tempfile.TemporaryDirectory() as d:
        mc = app.L.callbacks.ModelCheckpoint(dirpath=os.path.join(d, "c"), filename="{epoch:03d}",
                                             monitor="val_loss", mode="min", save_top_k=-1, save_last=True)
        clock = Clock()
        cbs = [mc, clock]
        cb = None
        if variant != "none":
            cb = MetadataCallback(background=variant == "worker")
            cbs.append(cb)
        t = app.trainer(d, epochs=epochs, callbacks=cbs)
        train, val = app.loaders()
        t0 = time.perf_counter()
        t.fit(app.Tiny(), train, val)
        wall = time.perf_counter() - t0
        return wall, cb.timings if cb else None, clock.epochs()


class Clock(app.L.Callback):
    """Epoch starts (an epoch holds its saves: the training loop's own time, without the
    flush at the end of fit)."""

    def __init__(self) -> None:
        self.starts: list = []

    def on_train_epoch_start(self, trainer: object, pl_module: object) -> None:
        self.starts.append(time.perf_counter())

    def epochs(self) -> list:
        return [(b - a) * 1e3 for a, b in zip(self.starts, self.starts[1:])]


def pct(xs: list, p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def main() -> None:
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    walls: dict = {"none": [], "worker": [], "thread": []}
    epoch_ms: dict = {"none": [], "worker": [], "thread": []}
    per: dict = {"worker": {"training_thread": [], "write": []}, "thread": {"training_thread": [], "write": []}}
    one(2, "worker")  # warm up imports and the extension
    for _ in range(rounds):
        for v in walls:
            wall, timings, ep = one(epochs, v)
            walls[v].append(wall)
            epoch_ms[v] += ep
            if timings:
                for k in per[v]:
                    per[v][k] += timings[k]
    saves = 2 * epochs
    base = statistics.median(walls["none"])
    print(f"{epochs} epochs, {saves} saves per fit, {rounds} rounds (medians)")
    for v, w in walls.items():
        m = statistics.median(w)
        print(f"  fit {v:7s} {m * 1e3:8.1f} ms  ({(m - base) * 1e3 / saves:+.2f} ms per save vs none)")
    for v, e in epoch_ms.items():
        print(f"  epoch (2 saves) {v:7s} median {statistics.median(e):.2f} ms, p90 {pct(e, 0.9):.2f} ms")
    for v, d in per.items():
        tt, wr = d["training_thread"], d["write"]
        print(f"  {v:7s} training thread per save: median {statistics.median(tt):.2f} ms, p90 {pct(tt, 0.9):.2f} ms; "
              f"sidecar write: median {statistics.median(wr):.2f} ms, p90 {pct(wr, 0.9):.2f} ms")


if __name__ == "__main__":
    main()
