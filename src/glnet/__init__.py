"""GLNet (Chen et al., CVPR 2019) for ultra-high-resolution image segmentation.

The library behind the napari-glnet plugin: the model with the authors'
checkpoint layout, an inference engine with a region API, metrics, label
codecs and the ``glnet`` command line.  No Qt here.
"""

from importlib.metadata import PackageNotFoundError, version

from glnet.checkpoint import GLNetCheckpoint, load_checkpoint, save_checkpoint
from glnet.classes import DEEPGLOBE, ClassInfo, ClassTable, read_class_table
from glnet.constants import Mode, Precision
from glnet.errors import GLNetError
from glnet.inference.coarse import CoarseToFine
from glnet.inference.engine import ImageSession, Segmenter
from glnet.inference.results import Progress, Segmentation
from glnet.inference.spec import ModelSpec
from glnet.metrics import ConfusionMatrix

try:  # pyproject.toml is the one place the version is written
    __version__ = version("napari-glnet")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "unknown"

__all__ = [
    "DEEPGLOBE",
    "ClassInfo",
    "ClassTable",
    "CoarseToFine",
    "ConfusionMatrix",
    "GLNetCheckpoint",
    "GLNetError",
    "ImageSession",
    "Mode",
    "ModelSpec",
    "Precision",
    "Progress",
    "Segmentation",
    "Segmenter",
    "load_checkpoint",
    "read_class_table",
    "save_checkpoint",
]
