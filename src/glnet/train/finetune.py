"""Fine-tuning a model on the corrections people made: ``glnet finetune``
and the plugin's "Fine-tune" button.

An export of reviewed/corrected regions (``glnet export``, or the plugin's
export) is a small data set with its own train/val split.  Fine-tuning runs
one training stage (``train`` with ``finetune=True``: any checkpoint,
ours or the authors', can be the start) for a few epochs at a low learning
rate, and scores the held-out tiles with the original model before and the
new one after, on exactly the same tiles, so the user sees whether the
corrections helped before switching models.

The source checkpoint is never written to: the output (and the files
written beside it) must be other files, and existing outputs are replaced
only with ``overwrite``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from glnet.checkpoint import GLNetCheckpoint, load_checkpoint
from glnet.classes import ClassTable
from glnet.constants import Mode, Precision
from glnet.errors import GLNetError
from glnet.inference.coarse import CoarseToFine
from glnet.train.batches import SegmentationData
from glnet.train.config import TrainConfig
from glnet.train.loop import BatchCallback, TrainingStopped, split_data, train, validate, written_files
from glnet.train.start import data_classes

log = logging.getLogger(__name__)

FINETUNE_LR = 1e-5  # below every stage's training rate (2e-5..5e-5): adjust, do not relearn
FINETUNE_EPOCHS = 5


@dataclass
class FinetuneConfig:
    source: Path  # the checkpoint to start from (ours, or the authors' with ``mode``)
    data: Path  # an export folder (manifest.json with a train/val split) or a DeepGlobe-layout folder
    output: Path  # the new checkpoint; .last.pt, .log.csv and .log.png are written beside it
    stage: Mode | None = None  # None: the source checkpoint's mode
    epochs: int = FINETUNE_EPOCHS
    lr: float | None = None  # None: FINETUNE_LR
    val_fraction: float = 0.2  # held out when the data has no split of its own
    classes: ClassTable | None = None  # None: the export's, else the source's
    mode: Mode | None = None  # the mode of an authors' source file
    global_from: Path | None = None  # the authors' global file (their local2global needs it)
    batch_size: int = 2
    sub_batch_size: int = 6
    precision: Precision = Precision.FP32
    device: str = "auto"
    seed: int = 0
    overwrite: bool = False  # replace existing outputs (never the source)
    coarse_to_fine: CoarseToFine | None = None
    exclude: tuple[int, ...] | None = None  # classes left out of the mIoU; None: class 0 if named "unknown"
    side_files: bool = True  # also .last.pt, .log.csv and .log.png beside the output


@dataclass
class FinetuneResult:
    output: Path | None  # the best checkpoint (None when stopped before the first epoch ended)
    miou_before: float  # the source model on the held-out tiles (nan: no held-out tiles, or other classes)
    miou_after: float  # the new model on the same tiles
    epochs: int  # epochs completed
    stopped: bool = False  # should_stop() ended it early
    train_tiles: int = 0
    val_tiles: int = 0

    @property
    def improved(self) -> bool:
        return self.miou_after > self.miou_before


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_outputs(
    source: Path, output: Path, overwrite: bool, protected: tuple[Path, ...] = (), side_files: bool = True
) -> None:
    """Refuse to write over the source checkpoint (whatever ``overwrite``
    says) or, without ``overwrite``, over any existing file."""
    files = written_files(output, side_files)
    for f in files:
        for p in (source, *protected):
            if _same_file(f, p):
                what = "the output" if f == output else f"{f.name}, written beside the output,"
                raise GLNetError(f"{what} would overwrite the source checkpoint {p}: choose another output name")
    if not output.parent.is_dir():
        raise GLNetError(f"output folder {output.parent} does not exist")
    existing = [f.name for f in files if f.exists()]
    if existing and not overwrite:
        raise GLNetError(f"{', '.join(existing)} exist(s) in {output.parent}: pass --overwrite to replace")


def held_out_tiles(data: Path, val_fraction: float = 0.2, seed: int = 0) -> tuple[int, int]:
    """(training tiles, held-out tiles) a fine-tune on ``data`` would use: a
    quick look (the manifest only) before starting minutes of work."""
    config = TrainConfig(
        data=Path(data), mode=Mode.GLOBAL, output=Path("unused.pt"), val_fraction=val_fraction, seed=seed
    )
    train, val = split_data(config)
    return len(train), len(val)


def no_held_out_message(data: Path, tiles: int) -> str:
    return (
        f"{data} has no held-out tiles ({tiles} tile{'s' * (tiles != 1)} in all): fine-tuning could not tell "
        "whether the new model is better; export at least 2 tiles (smaller tiles, or more reviewed regions) "
        "so that one is held out"
    )


def _exclude(config: FinetuneConfig, classes: ClassTable) -> tuple[int, ...]:
    if config.exclude is not None:
        return tuple(config.exclude)
    return (0,) if classes.names[0].lower() == "unknown" else ()


def _score(ckpt: GLNetCheckpoint, data: SegmentationData | None, config: FinetuneConfig, exclude) -> float:
    if data is None:
        return math.nan
    return validate(ckpt, data, config.device, config.precision, exclude)


def finetune(
    config: FinetuneConfig,
    on_batch: BatchCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> FinetuneResult:
    """Fine-tune ``config.source`` on ``config.data``; see the module docstring.

    ``on_batch(epoch, done, total, loss)`` reports progress after every
    batch; ``should_stop()``, asked after every batch, ends the run early
    (the result then says ``stopped`` and holds the best finished epoch)."""
    source, output = Path(config.source), Path(config.output)
    mode = Mode.parse(config.mode, "--mode") if config.mode is not None else None
    global_from = Path(config.global_from) if config.global_from else None
    check_outputs(source, output, config.overwrite, (global_from,) if global_from else (), config.side_files)
    if config.epochs < 1:
        raise GLNetError(f"epochs must be at least 1, got {config.epochs}")
    authors_l2g = mode == Mode.LOCAL2GLOBAL
    src = load_checkpoint(source, mode=mode, global_path=global_from if authors_l2g else None)
    stage = Mode.parse(config.stage, "stage") if config.stage is not None else src.mode
    if stage == Mode.LOCAL2GLOBAL and src.mode == Mode.GLOBAL:
        raise GLNetError(
            f"{source} is a global checkpoint: fine-tune its global or global2local stage, not local2global"
        )
    train_config = TrainConfig(
        data=Path(config.data),
        mode=stage,
        output=output,
        init_from=source,
        global_from=global_from,
        epochs=config.epochs,
        batch_size=config.batch_size,
        sub_batch_size=config.sub_batch_size,
        lr=config.lr if config.lr is not None else FINETUNE_LR,
        size_g=src.size_g,
        size_p=src.size_p,
        val_fraction=config.val_fraction,
        precision=config.precision,
        device=config.device,
        seed=config.seed,
        classes=config.classes,
        finetune=True,
        init_mode=mode,
        coarse_to_fine=config.coarse_to_fine,
        side_files=config.side_files,
    )
    classes = data_classes(train_config) or src.classes
    train_config.exclude = _exclude(config, classes)
    train_entries, val_entries = split_data(train_config)
    if not val_entries:  # it would train for minutes and could not say whether it helped
        raise GLNetError(no_held_out_message(config.data, len(train_entries)))
    val_data = SegmentationData(val_entries, classes, augment=False)
    if classes.names == src.classes.names:
        miou_before = _score(src, val_data, config, train_config.exclude)
    else:  # the source predicts other classes: nothing to compare
        miou_before = math.nan
    del src
    log.info(
        "fine-tuning %s (%s stage) on %d tiles, %d held out; mIoU before %.4f",
        source,
        stage,
        len(train_entries),
        len(val_entries),
        miou_before,
    )
    stopped, epochs = False, config.epochs
    best: Path | None
    try:
        best = train(train_config, on_batch, should_stop)
    except TrainingStopped as stop:
        stopped, epochs = True, stop.epochs_done
        best = output if output.is_file() and epochs > 0 else None
    miou_after = math.nan
    if best is not None:
        miou_after = float(load_checkpoint(best).extra.get("val_miou", math.nan))
    return FinetuneResult(best, miou_before, miou_after, epochs, stopped, len(train_entries), len(val_entries))


__all__ = [
    "FINETUNE_EPOCHS",
    "FINETUNE_LR",
    "FinetuneConfig",
    "FinetuneResult",
    "check_outputs",
    "finetune",
    "held_out_tiles",
    "no_held_out_message",
]
