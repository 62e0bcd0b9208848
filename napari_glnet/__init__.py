"""napari-glnet: GLNet segmentation of huge images inside napari.

The model, the checkpoints and the patch engine live in the ``glnet``
library; this package only holds the napari side (the widget in
``_widget.py``, the manifest ``napari.yaml``) and the demo
(``python -m napari_glnet.demo``).  Importing it does not import Qt.
"""

__version__ = "0.1.0"
