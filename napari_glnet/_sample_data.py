"""npe2 sample data: a synthetic land-cover scene with its exact ground truth.

So a new user can try segmenting, reviewing and scoring without any file:
File › Open Sample › GLNet.  The scene is :class:`glnet.data.synthetic.SyntheticScene`
(the same generator as ``sample_data/make_sample.py``) with DeepGlobe's seven
classes; 1024 x 1024 px renders in about a second on one CPU core (2048 px
takes about 4 s).  The ground-truth layer carries the class table in
``metadata["glnet_classes"]``, like our label stores, and the image layer
says where the demo checkpoint is: it ships inside the package
(``napari_glnet/data/demo.glnet.pt``, found with importlib.resources, so a
wheel install has it too).
"""

from __future__ import annotations

from importlib.resources import files

from glnet.classes import DEEPGLOBE
from glnet.data.synthetic import SyntheticScene

SIZE = 1024
SEED = 0
DEMO_CHECKPOINT = "data/demo.glnet.pt"  # inside the package


def demo_checkpoint() -> str | None:
    """The trained demo checkpoint shipped in the package (a real file: the
    package is installed as files, never zipped); None where it is missing."""
    resource = files("napari_glnet").joinpath(DEMO_CHECKPOINT)
    return str(resource) if resource.is_file() else None


def synthetic_scene(size: int = SIZE, seed: int = SEED) -> list[tuple]:
    """[(rgb, image meta, "image"), (labels, labels meta, "labels")] of one scene."""
    from napari_glnet._reader import label_colormap

    rgb, labels = SyntheticScene(size, size, seed=seed).render(0, 0, size, size)
    source = f"SyntheticScene({size}, {size}, seed={seed})"
    image_meta = {
        "name": "synthetic scene",
        "rgb": True,
        "metadata": {"glnet_source": source, "glnet_demo_checkpoint": demo_checkpoint()},
    }
    truth_meta = {
        "name": "ground truth",
        "colormap": label_colormap(DEEPGLOBE),
        "opacity": 0.4,
        "visible": False,
        "metadata": {"glnet_classes": DEEPGLOBE.to_list(), "glnet_source": source},
    }
    return [(rgb, image_meta, "image"), (labels, truth_meta, "labels")]
