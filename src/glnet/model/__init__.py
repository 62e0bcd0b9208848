"""The GLNet architecture (Chen et al., CVPR 2019) with the authors' key layout."""

from glnet.model.ensemble_head import EnsembleHead
from glnet.model.fpn import Features
from glnet.model.glnet import CLASSIFIERS, GLNet, GLNetConfig, GlobalContext

__all__ = ["CLASSIFIERS", "EnsembleHead", "Features", "GLNet", "GLNetConfig", "GlobalContext"]
