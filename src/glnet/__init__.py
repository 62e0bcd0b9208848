"""GLNet (Chen et al., CVPR 2019) for ultra-high-resolution image segmentation.

The library behind the napari-glnet plugin: the model with the authors'
checkpoint layout, an inference engine with a region API, metrics, label
codecs and the ``glnet`` command line.  No Qt here.
"""

from .checkpoint import GLNetCheckpoint, load_checkpoint, save_checkpoint
from .classes import DEEPGLOBE, ClassInfo, ClassTable, read_class_table
from .coarse import CoarseToFine
from .engine import ImageSession, Progress, Segmentation, Segmenter
from .errors import GLNetError
from .metrics import ConfusionMatrix

__version__ = "0.1.0"

__all__ = [
    "GLNetCheckpoint", "load_checkpoint", "save_checkpoint", "DEEPGLOBE", "ClassInfo", "ClassTable",
    "read_class_table", "CoarseToFine",
    "ImageSession", "Progress", "Segmentation", "Segmenter", "GLNetError", "ConfusionMatrix",
]
