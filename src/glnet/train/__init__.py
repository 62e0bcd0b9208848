"""Training GLNet in the authors' three stages (global, global2local, local2global).

The recipe is the authors' (their training script in VITA-Group/GLNet):
focal loss (gamma 3) on 1/4-scale targets, plus in global2local 0.15 x the
MSE between the local ps3 and the global ps3 crop; Adam (weight decay 5e-4)
with a poly schedule (1 - t/T)^0.9 per iteration; one optimiser step per
batch of 6 images with the patches of each image in sub-batches of 6;
flips and right-angle rotations.  Stages: global (lr 5e-5), global2local
(global frozen, lr 2e-5), local2global (local frozen, lr 5e-5).
"""

from glnet.train.config import TrainConfig
from glnet.train.finetune import FinetuneConfig, FinetuneResult, finetune
from glnet.train.loop import TrainingStopped, train
from glnet.train.losses import FM_REG_WEIGHT, fm_regularisation, focal_loss, quarter_labels

__all__ = [
    "FM_REG_WEIGHT",
    "FinetuneConfig",
    "FinetuneResult",
    "TrainConfig",
    "TrainingStopped",
    "finetune",
    "fm_regularisation",
    "focal_loss",
    "quarter_labels",
    "train",
]
