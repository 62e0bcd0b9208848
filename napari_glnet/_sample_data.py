"""npe2 sample data: a synthetic land-cover scene with its exact ground truth.

So a new user can try segmenting, reviewing and scoring without any file:
File › Open Sample › GLNet.  The scene is :class:`glnet.data.synthetic.SyntheticScene`
(the same generator as ``sample_data/make_sample.py``) with DeepGlobe's seven
classes; 1024 x 1024 px renders in about a second on one CPU core (2048 px
takes about 4 s).  The ground-truth layer carries the class table in
``metadata["glnet_classes"]``, like our label stores, and the image layer
says where the demo checkpoint is (``sample_data/demo.glnet.pt`` in a source
checkout, None where it is absent).
"""

from __future__ import annotations

from pathlib import Path

from glnet.classes import DEEPGLOBE
from glnet.data.synthetic import SyntheticScene

SIZE = 1024
SEED = 0
DEMO_CHECKPOINT = Path(__file__).resolve().parent.parent / "sample_data" / "demo.glnet.pt"


def demo_checkpoint() -> str | None:
    """The trained demo checkpoint, when this checkout has it."""
    return str(DEMO_CHECKPOINT) if DEMO_CHECKPOINT.is_file() else None


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
