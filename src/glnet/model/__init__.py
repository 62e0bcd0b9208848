"""The GLNet architecture (Chen et al., CVPR 2019) with the authors' key layout."""

from .ensemble_head import EnsembleHead
from .fpn import Features
from .glnet import CLASSIFIERS, MODES, GLNet, GLNetConfig, GlobalContext

__all__ = ["CLASSIFIERS", "GLNet", "GLNetConfig", "GlobalContext", "Features", "EnsembleHead", "MODES"]
