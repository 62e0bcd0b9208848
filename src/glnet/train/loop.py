"""The training loop: model initialisation per stage, Adam with a poly
schedule, validation mIoU each epoch, best/last checkpoints and resuming.

Files written for ``output`` = ``model.pt``:

* ``model.pt``: the best checkpoint by validation mIoU (the last one when
  there is no validation set), in our checkpoint format, ready to segment;
* ``model.last.pt``: the last epoch's checkpoint plus the training state
  (optimiser, schedule, epoch, RNG) in ``extra["train_state"]``: what
  ``resume`` continues from, giving the same weights as an uninterrupted run;
* ``model.log.csv``: one row per epoch.
"""

from __future__ import annotations

import copy
import csv
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch

from glnet.checkpoint import GLNetCheckpoint, load_checkpoint, save_checkpoint
from glnet.constants import Mode, Precision
from glnet.data.dataset import read_export
from glnet.errors import GLNetError
from glnet.metrics import ConfusionMatrix
from glnet.model import GLNet
from glnet.model.resnet import BACKBONES
from glnet.runtime import autocast, resolve_device
from glnet.train.batches import SegmentationData, prepare, split_entries
from glnet.train.config import TrainConfig
from glnet.train.plot import write_plot
from glnet.train.start import initial_checkpoint
from glnet.train.steps import freeze, set_train_mode, train_step, trained_parts

log = logging.getLogger(__name__)

DEFAULT_LR = {
    Mode.GLOBAL: 5e-5,
    Mode.GLOBAL2LOCAL: 2e-5,
    Mode.LOCAL2GLOBAL: 5e-5,
}  # the authors' scripts
WEIGHT_DECAY = 5e-4
POLY_POWER = 0.9
# called after every batch with (epoch, batches done, batches in the epoch, loss)
BatchCallback = Callable[[int, int, int, float], None]


def sibling(output: Path, tag: str) -> Path:
    """model.pt -> model.<tag>.pt (the last checkpoint, the CSV log)."""
    suffix = ".csv" if tag == "log" else output.suffix
    return output.with_name(f"{output.stem}.{tag}{suffix}")


def plot_path(output: Path) -> Path:
    """model.pt -> model.log.png, the loss and mIoU curves beside the CSV log."""
    return output.with_name(f"{output.stem}.log.png")


def written_files(output: Path, side_files: bool = True) -> list[Path]:
    """Every file ``train`` writes for ``output`` (only ``output`` without ``side_files``)."""
    if not side_files:
        return [output]
    return [output, sibling(output, "last"), sibling(output, "log"), plot_path(output)]


def _checked(config: TrainConfig) -> TrainConfig:
    """A copy of ``config`` with its names parsed and the stage's default
    learning rate filled in (the caller's config is left as it was)."""
    mode = Mode.parse(config.mode)
    init_mode = Mode.parse(config.init_mode, "--mode for --from") if config.init_mode is not None else None
    lr = config.lr if config.lr is not None else DEFAULT_LR[mode]
    config = replace(config, mode=mode, init_mode=init_mode, precision=Precision.parse(config.precision), lr=lr)
    if config.mode != Mode.GLOBAL and config.init_from is None:
        need = "a global" if config.mode == Mode.GLOBAL2LOCAL else "a global2local"
        raise GLNetError(f"{config.mode} training starts from {need} checkpoint: pass --from")
    if config.coarse_to_fine is not None and config.mode == Mode.GLOBAL:
        raise GLNetError(
            "--coarse-to-fine chooses the local branch's patches: it applies to global2local and local2global"
        )
    for name in ("epochs", "batch_size", "sub_batch_size"):
        if getattr(config, name) < 1:
            raise GLNetError(f"{name.replace('_', '-')} must be at least 1, got {getattr(config, name)}")
    for name in ("size_g", "size_p"):
        value = getattr(config, name)
        if value < 32 or value % 4:
            raise GLNetError(f"{name.replace('_', '-')} must be a multiple of 4 and at least 32, got {value}")
    if config.backbone is not None and config.backbone not in BACKBONES:
        raise GLNetError(f"unknown backbone {config.backbone!r}: use one of {', '.join(BACKBONES)}")
    return config


def _optimizer(model: GLNet, mode: Mode, lr: float) -> torch.optim.Adam:
    params = [p for name in trained_parts(mode) for p in getattr(model, name).parameters()]
    return torch.optim.Adam(params, lr=lr, weight_decay=WEIGHT_DECAY)


def _poly(total_steps: int) -> Callable[[int], float]:
    return lambda step: max(0.0, 1.0 - step / total_steps) ** POLY_POWER


def validate(
    ckpt: GLNetCheckpoint,
    data: SegmentationData,
    device: str,
    precision: Precision,
    exclude: tuple[int, ...],
) -> float:
    """Validation mIoU with the inference engine, on a copy of the model
    (the Segmenter folds BatchNorm into its models)."""
    from glnet.inference.spec import ModelSpec

    seg = ModelSpec(device=device, precision=precision).place(copy.deepcopy(ckpt))
    cm = ConfusionMatrix(ckpt.config.num_classes)
    for i in range(len(data)):
        image, labels = data.read(i)
        cm.update(labels, seg.segment(image).labels)
    return cm.scores(exclude=[c for c in exclude if c < ckpt.config.num_classes]).mean_iou


def _rng_state() -> dict:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fingerprint(config: TrainConfig) -> dict:
    """Settings a resumed run must share with the interrupted one."""
    keys = (
        "mode",
        "epochs",
        "batch_size",
        "sub_batch_size",
        "lr",
        "size_g",
        "size_p",
        "seed",
        "val_fraction",
    )
    return {k: (v.value if isinstance(v, Enum) else v) for k, v in asdict(config).items() if k in keys}


def _write_log(path: Path, row: dict, epoch: int) -> None:
    """Append this epoch's row, dropping rows of later epochs left by an interrupted run."""
    rows = []
    if path.is_file():
        with path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < epoch]
    rows.append(row)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        w.writeheader()
        w.writerows(rows)


def split_data(config: TrainConfig) -> tuple[list, list]:
    """(train, validation) entries of ``config``: ``--val``'s folder, else the
    data's own split (an export's manifest), else a seeded ``val_fraction``.
    A pure function of the config, so a caller (fine-tuning) can score the
    same held-out images that training validates on."""
    entries = read_export(config.data)
    val_entries = [(i, m, "val") for i, m, _ in read_export(config.val)] if config.val else []
    train_entries, split_val = split_entries(entries, 0.0 if config.val else config.val_fraction, config.seed)
    return train_entries, val_entries or split_val


class TrainingStopped(GLNetError):
    """``should_stop`` asked to stop; the epochs finished before are saved."""

    def __init__(self, epochs_done: int):
        super().__init__(f"training stopped after {epochs_done} complete epoch(s)")
        self.epochs_done = epochs_done


def train(
    config: TrainConfig,
    on_batch: BatchCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Path:
    """Train one stage; returns the path of the best checkpoint.

    ``should_stop()`` is asked after every batch (a GUI's cancel button): when
    it returns True the epoch is abandoned and ``TrainingStopped`` raised;
    checkpoints and logs of the finished epochs stay."""
    config = _checked(config)
    device = resolve_device(config.device)
    autocast(device, config.precision)  # validates the name
    output, last_path, log_path = (
        Path(config.output),
        sibling(Path(config.output), "last"),
        sibling(Path(config.output), "log"),
    )
    train_entries, val_entries = split_data(config)
    state = None
    if config.resume and not config.side_files:
        raise GLNetError("resuming needs the .last.pt written beside the output: train with its side files")
    if config.resume:
        if not last_path.is_file():
            raise GLNetError(f"--resume: {last_path} not found (nothing to resume)")
        ckpt = load_checkpoint(last_path)
        state = ckpt.extra.get("train_state")
        if state is None:
            raise GLNetError(f"{last_path} holds no training state")
        if state["config"] != _fingerprint(config):
            raise GLNetError(f"--resume: settings differ from the interrupted run's: {state['config']}")
        if ckpt.global_model is not None:
            freeze(ckpt.global_model)
    else:
        ckpt = initial_checkpoint(config)
    train_data = SegmentationData(train_entries, ckpt.classes, seed=config.seed)
    val_data = SegmentationData(val_entries, ckpt.classes, augment=False) if val_entries else None
    ckpt.scene_size = max(max(train_data.read(0)[0].shape[:2]), config.size_p)
    ckpt.size_g, ckpt.size_p = config.size_g, config.size_p

    model = ckpt.model.to(device)
    global_model = ckpt.global_model.to(device) if ckpt.global_model is not None else None
    set_train_mode(model, config.mode)
    lr = config.lr if config.lr is not None else DEFAULT_LR[config.mode]  # _checked filled it in
    optimizer = _optimizer(model, config.mode, lr)
    steps_per_epoch = -(-len(train_data) // config.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _poly(config.epochs * steps_per_epoch))
    scaler = torch.amp.GradScaler(device.type, enabled=config.precision == Precision.FP16 and device.type == "cuda")
    start_epoch, best = 0, float("-inf")
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        start_epoch, best = state["epoch"] + 1, state["best"]
        log.info("resuming %s after epoch %d", last_path, state["epoch"])

    def backward(loss: torch.Tensor, retain_graph: bool) -> None:
        scaler.scale(loss).backward(retain_graph=retain_graph)

    for epoch in range(start_epoch, config.epochs):
        t0, losses = time.perf_counter(), []
        batches = train_data.batches(epoch, config.batch_size)
        lr = optimizer.param_groups[0]["lr"]
        for b, indices in enumerate(batches):
            images = [prepare(*train_data.sample(i, epoch), config.size_g, config.size_p, device) for i in indices]
            loss = train_step(
                config.mode,
                model,
                images,
                config.sub_batch_size,
                global_model,
                config.precision,
                backward,
                config.coarse_to_fine,
            )
            if not np.isfinite(loss):
                raise GLNetError(f"the loss became {loss} in epoch {epoch + 1}: lower --lr or use --precision fp32")
            if any(p.grad is not None for g in optimizer.param_groups for p in g["params"]):
                scaler.step(optimizer)  # (coarse-to-fine may leave a batch without patches)
                scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            losses.append(loss)
            if on_batch is not None:
                on_batch(epoch, b + 1, len(batches), loss)
            if should_stop is not None and should_stop():
                log.info("stopped in epoch %d", epoch + 1)
                raise TrainingStopped(epoch)
        model.eval()
        miou = validate(ckpt, val_data, config.device, config.precision, config.exclude) if val_data else float("nan")
        set_train_mode(model, config.mode)
        improved = val_data is None or (np.isfinite(miou) and miou > best)
        if improved:
            best = miou if val_data else best
        ckpt.extra = {
            "epoch": epoch + 1,
            "val_miou": miou,
            "train_loss": float(np.mean(losses)),
            "lr": config.lr,
        }
        if improved:
            save_checkpoint(ckpt, output)
        ckpt.extra = {
            **ckpt.extra,
            "train_state": {
                "epoch": epoch,
                "best": best,
                "config": _fingerprint(config),
                "rng": _rng_state(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
            },
        }
        if config.side_files:
            save_checkpoint(ckpt, last_path)
        row = {
            "epoch": epoch + 1,
            "lr": f"{lr:.4g}",
            "train_loss": f"{np.mean(losses):.6f}",
            "val_miou": f"{miou:.6f}",
            "best": int(improved),
            "seconds": f"{time.perf_counter() - t0:.1f}",
        }
        if config.side_files:
            _write_log(log_path, row, epoch + 1)
            write_plot(log_path, plot_path(output))
        log.info(
            "epoch %d/%d loss %.4f val mIoU %.4f",
            epoch + 1,
            config.epochs,
            np.mean(losses),
            miou,
        )
    if not output.is_file():  # resumed after the last epoch, or never improved
        ckpt.extra = {k: v for k, v in ckpt.extra.items() if k != "train_state"}
        save_checkpoint(ckpt, output)
    return output


__all__ = [
    "DEFAULT_LR",
    "TrainConfig",
    "TrainingStopped",
    "initial_checkpoint",
    "plot_path",
    "split_data",
    "train",
    "validate",
    "written_files",
]
