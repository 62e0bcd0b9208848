"""Screenshots of the plugin in use, for the README (docs/plugin.png, docs/plugin-sample.png).

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot.py [--weights CKPT]

1. docs/plugin.png: a real DeepGlobe image from ../shared/data, opened with
   our reader and segmented in view by the demo model (the overlay and the
   widget; those images come without masks, so the IoU table is empty);
2. docs/plugin-sample.png: the sample scene with its exact ground truth and
   the IoU table scoring the labels against it.
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


def shoot(app, viewer, path: Path) -> None:
    from PIL import Image

    viewer.window._qt_window.resize(1600, 1000)
    for _ in range(20):
        app.processEvents()
    Image.fromarray(viewer.screenshot(canvas_only=False, flash=False)).save(path)
    print(f"wrote {path}")


def main() -> None:
    import napari
    from napari.qt import get_qapp

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=str(REPO / "napari_glnet" / "data" / "demo.glnet.pt"))
    args = p.parse_args()
    os.environ.setdefault("GLNET_CACHE_DIR", tempfile.mkdtemp())
    app = get_qapp()

    # 1. a real image
    viewer = napari.Viewer(title="GLNet")
    viewer.open(str(IMAGE), plugin="napari-glnet")
    _, w = viewer.window.add_plugin_dock_widget("napari-glnet", "GLNet segmentation")
    w.set_checkpoint(args.weights)
    viewer.scene.camera.center = (1400, 1000)
    viewer.scene.camera.zoom = 1.5
    w.start()
    wait(app, lambda: not w.running)
    shoot(app, viewer, REPO / "docs" / "plugin.png")
    viewer.close()

    # 2. the sample scene with its ground truth
    viewer = napari.Viewer(title="GLNet")
    viewer.open_sample("napari-glnet", "synthetic_scene")
    _, w = viewer.window.add_plugin_dock_widget("napari-glnet", "GLNet segmentation")
    w.set_checkpoint(args.weights)
    w.image.value = viewer.layers["synthetic scene"]
    viewer.reset_view()
    w.start()
    wait(app, lambda: not w.running)
    w.review.iou.set_ground_truth(viewer.layers["ground truth"])
    w.review.iou.set_scope("whole image")
    wait(app, lambda: w.review.iou.scores is not None, 120)
    shoot(app, viewer, REPO / "docs" / "plugin-sample.png")
    viewer.close()


if __name__ == "__main__":
    main()
