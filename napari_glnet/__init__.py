"""napari-glnet: GLNet segmentation of huge images inside napari.

The model, the checkpoints and the patch engine live in the ``glnet``
library; this package only holds the napari side (the widget in
``_widget.py``, the manifest ``napari.yaml``) and the demo
(``python -m napari_glnet.demo``).  Importing it does not import Qt.
"""

from importlib.metadata import PackageNotFoundError, version

try:  # pyproject.toml is the one place the version is written
    __version__ = version("napari-glnet")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "unknown"
