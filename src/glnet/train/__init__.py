"""Training GLNet in the authors' three stages (global, global2local, local2global).

The recipe is the reference's (see ``docs``/glnet-reference.md, "Training"):
focal loss on 1/4-scale targets, Adam with a poly schedule, one optimiser
step per batch of images with the patches of each image in sub-batches.
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
