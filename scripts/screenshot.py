"""Screenshots of the plugin in use, for the README (docs/*.png).

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot.py [--weights CKPT]

1. docs/plugin.png: a real DeepGlobe image from ../shared/data, opened with
   our reader and segmented in view by the demo model (the overlay and the
   widget; those images come without masks, so the IoU table is empty);
2. docs/plugin-sample.png: the sample scene with its exact ground truth and
   the IoU table scoring the labels against it;
3. docs/guided-review.png: guided review on the real image, segmented whole:
   the model's confidence (red: least sure), the blocks a reviewer went
   through with Next uncertain region and marked reviewed (green), the
   review's progress; docs/guided-next.png: the camera after the next press,
   on the least confident block left.

``--only NAME`` (plugin, sample, guided) makes one of them.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGE = REPO.parent / "shared" / "data" / "deepglobe_unlabeled" / "118757_sat.jpg"


def wait(app, predicate, timeout: float = 900.0) -> None:
    import time

    end = time.monotonic() + timeout
    while not predicate():
        app.processEvents()
        time.sleep(0.05)
        if time.monotonic() > end:
            raise TimeoutError("the plugin did not finish in time")


def size_window(app, viewer) -> None:
    viewer.window._qt_window.resize(1600, 1000)
    for _ in range(20):
        app.processEvents()


def shoot(app, viewer, path: Path) -> None:
    from PIL import Image

    size_window(app, viewer)
    Image.fromarray(viewer.screenshot(canvas_only=False, flash=False)).save(path)
    print(f"wrote {path}")


def main() -> None:
    from napari.qt import get_qapp

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=str(REPO / "napari_glnet" / "data" / "demo.glnet.pt"))
    p.add_argument("--only", choices=("plugin", "sample", "guided"), help="make only this one")
    args = p.parse_args()
    os.environ.setdefault("GLNET_CACHE_DIR", tempfile.mkdtemp())
    app = get_qapp()
    shots = {"plugin": real_image, "sample": sample_scene, "guided": guided_review}
    for name, shot in shots.items():
        if args.only in (None, name):
            shot(app, args.weights)


def open_widget(path: str | None, weights: str):
    """A viewer with ``path`` opened by our reader (None: the sample scene) and the dock widget."""
    import napari

    viewer = napari.Viewer(title="GLNet")
    if path is None:
        viewer.open_sample("napari-glnet", "synthetic_scene")
    else:
        viewer.open(path, plugin="napari-glnet")
    _, w = viewer.window.add_plugin_dock_widget("napari-glnet", "GLNet segmentation")
    w.set_checkpoint(weights)
    return viewer, w


def real_image(app, weights: str) -> None:
    viewer, w = open_widget(str(IMAGE), weights)
    viewer.scene.camera.center = (1400, 1000)
    viewer.scene.camera.zoom = 1.5
    w.start()
    wait(app, lambda: not w.running)
    shoot(app, viewer, REPO / "docs" / "plugin.png")
    viewer.close()


def sample_scene(app, weights: str) -> None:
    viewer, w = open_widget(None, weights)
    w.image.value = viewer.layers["synthetic scene"]
    viewer.reset_view()
    w.start()
    wait(app, lambda: not w.running)
    w.review.iou.set_ground_truth(viewer.layers["ground truth"])
    w.review.iou.set_scope("whole image")
    w.review.iou.refresh_now()  # not the debounced recount: the view's numbers would be shot meanwhile
    wait(app, lambda: w.review.iou.scores is not None, 120)
    shoot(app, viewer, REPO / "docs" / "plugin-sample.png")
    viewer.close()


def guided_review(app, weights: str, reviewed: int = 3) -> None:
    """The whole image segmented, then what a reviewer does: Next uncertain
    region, correct, Mark reviewed, ``reviewed`` times."""
    viewer, w = open_widget(str(IMAGE), weights)
    from napari_glnet.layers import level0

    viewer.reset_view()
    height, width = level0(viewer.layers[0]).shape[:2]
    w.controller.segment_region((0, 0, height, width))
    wait(app, lambda: not w.running)
    review = w.review
    for _ in range(reviewed):
        review.next_button.click()
        block = review.guided.visited[-1]
        review.mark_reviewed(block)
    size_window(app, viewer)
    viewer.reset_view()
    labels = [layer for layer in viewer.layers if layer.name in ("GLNet labels", "GLNet overview") and layer.visible]
    for layer in labels:  # the confidence is under them: hidden, as a reviewer does to read it
        layer.visible = False
    shoot(app, viewer, REPO / "docs" / "guided-review.png")
    for layer in labels:
        layer.visible = True
    review.next_button.click()
    shoot(app, viewer, REPO / "docs" / "guided-next.png")
    viewer.close()


if __name__ == "__main__":
    main()
