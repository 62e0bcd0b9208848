"""What one training run is asked to do: the settings of ``glnet train``
and of fine-tuning, in one dataclass the loop, its start and the CLI share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from glnet.classes import ClassTable
from glnet.constants import Mode, Precision
from glnet.inference.coarse import CoarseToFine


@dataclass
class TrainConfig:
    data: Path
    mode: Mode
    output: Path
    # global2local: a global checkpoint; local2global: a global2local one;
    # global: optional, a global checkpoint to continue (e.g. on other classes)
    init_from: Path | None = None
    # local2global: the global checkpoint of the fixed first pass (default: init_from's global branch)
    global_from: Path | None = None
    epochs: int = 1
    batch_size: int = 6
    sub_batch_size: int = 6
    lr: float | None = None  # None: the authors' value for the mode
    size_g: int = 508
    size_p: int = 508
    backbone: str | None = None  # None: resnet50, or the --from checkpoint's
    fpn_width: int | None = None  # None: 256, or the --from checkpoint's
    backbone_width: int | None = None  # None: 64, or the --from checkpoint's
    val: Path | None = None
    val_fraction: float = 0.2
    precision: Precision = Precision.FP32
    device: str = "auto"
    resume: bool = False
    seed: int = 0
    classes: ClassTable | None = None  # None: the export manifest's, else the --from checkpoint's, else DeepGlobe
    exclude: tuple[int, ...] = (0,)  # classes left out of the validation mIoU (DeepGlobe: unknown)
    # fine-tuning: init_from may be a checkpoint of any mode (see glnet.train.start)
    finetune: bool = False
    init_mode: Mode | None = None  # the mode of an authors' init_from file (theirs do not record it)
    # global2local/local2global: train only on patches near (proposed or true) foreground
    coarse_to_fine: CoarseToFine | None = None
    # the files beside the output: model.last.pt (to resume), model.log.csv and model.log.png;
    # False writes the output only (a GUI's fine-tune: no resume, no files the user did not ask for)
    side_files: bool = True
