"""The napari side: the npe2 manifest, the headless demo, and the widget offscreen.

The manifest test needs npe2 but never Qt; the widget test needs napari and
Qt (skipped without them); the demo test needs neither.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from glnet.classes import DEEPGLOBE

from helpers import REPO, SHARED_IMAGES

WIDGET_COMMAND = "napari-glnet.segment_widget"
QT_MODULES = ("PyQt5", "PyQt6", "PySide2", "PySide6", "qtpy", "magicgui", "napari")


def _env(**extra: str) -> dict[str, str]:
    """A subprocess environment with no screen that finds the project even if not installed."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    path = [str(REPO), str(REPO / "src")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(path)
    env.update(extra)
    return env


def _run(args: list[str], cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def untrained_checkpoint(tmp_path_factory) -> Path:
    """The untrained demo checkpoint, made by the sample_data script (run twice: idempotent)."""
    out = tmp_path_factory.mktemp("ckpt") / "untrained.pt"
    script = str(REPO / "sample_data" / "make_untrained_checkpoint.py")
    first = _run([script, str(out)], cwd=REPO)
    assert first.returncode == 0, first.stderr
    mtime = out.stat().st_mtime_ns
    second = _run([script, str(out)], cwd=REPO)
    assert second.returncode == 0, second.stderr
    assert out.stat().st_mtime_ns == mtime, "an existing checkpoint must be left alone"
    return out


@pytest.fixture(scope="module")
def small_image(tmp_path_factory) -> Path:
    """A 600 x 600 crop of a shared DeepGlobe image (a synthetic one where shared/ is absent)."""
    out = tmp_path_factory.mktemp("img") / "crop_sat.png"
    images = sorted(SHARED_IMAGES.glob("*_sat.jpg")) if SHARED_IMAGES.is_dir() else []
    if images:
        with Image.open(images[0]) as im:
            im.convert("RGB").crop((0, 0, 600, 600)).save(out)
    else:
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 256, (600, 600, 3), dtype=np.uint8)).save(out)
    return out


# -- the manifest -------------------------------------------------------------
def test_manifest_widget_command_resolves_without_qt():
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_file(REPO / "napari.yaml")
    assert manifest.name == "napari-glnet"
    assert manifest.display_name == "GLNet"
    contributions = manifest.contributions
    commands = {c.id: c for c in contributions.commands}
    (widget,) = contributions.widgets
    assert widget.command == WIDGET_COMMAND and widget.display_name == "GLNet segmentation"
    assert [m.command for m in contributions.menus["napari/layers/segment"]] == [WIDGET_COMMAND]

    # The command names a class defined at the top of an importable module:
    # found without executing the module, so without importing Qt.
    module_name, attr = commands[WIDGET_COMMAND].python_name.split(":")
    spec = importlib.util.find_spec(module_name)
    assert spec is not None and spec.origin, f"{module_name} is not importable"
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    assert attr in classes, f"{module_name} defines no class {attr}"
    init_args = [
        a.arg
        for node in classes[attr].body
        if isinstance(node, ast.FunctionDef) and node.name == "__init__"
        for a in node.args.args
    ]
    assert "napari_viewer" in init_args, "napari injects the viewer by the parameter name napari_viewer"


def _defines_function(python_name: str) -> list[str]:
    """The parameters of the top-level function ``module:attr``, read without importing it."""
    module_name, attr = python_name.split(":")
    spec = importlib.util.find_spec(module_name)
    assert spec is not None and spec.origin, f"{module_name} is not importable"
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert attr in functions, f"{module_name} defines no function {attr}"
    return [a.arg for a in functions[attr].args.args]


def test_npe2_validate_passes():
    pytest.importorskip("npe2")
    result = _run(["-m", "npe2", "validate", str(REPO / "napari.yaml")], cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_manifest_writer_and_sample_data():
    npe2 = pytest.importorskip("npe2")
    contributions = npe2.PluginManifest.from_file(REPO / "napari.yaml").contributions
    commands = {c.id: c for c in contributions.commands}
    (writer,) = contributions.writers
    assert [str(t) for t in writer.layer_types] == ["labels"] and writer.filename_extensions == [".zarr"]
    assert _defines_function(commands[writer.command].python_name) == ["path", "data", "meta"]
    (sample,) = contributions.sample_data
    assert sample.key == "synthetic_scene" and "ground truth" in sample.display_name
    _defines_function(commands[sample.command].python_name)


def test_packaged_manifest_is_the_root_one_and_reading_it_imports_no_qt():
    pytest.importorskip("npe2")
    packaged = REPO / "napari_glnet" / "napari.yaml"
    # a real file (a git symlink is a one-line text file on some clones and in some wheels),
    # the same text as the root manifest, which stays the source
    assert not packaged.is_symlink() and packaged.read_text() == (REPO / "napari.yaml").read_text()
    code = textwrap.dedent(
        f"""
        import importlib.resources, sys
        import napari_glnet
        from npe2 import PluginManifest
        text = (importlib.resources.files("napari_glnet") / "napari.yaml").read_text()
        manifest = PluginManifest.from_file({str(REPO / "napari.yaml")!r})
        assert text == open({str(REPO / "napari.yaml")!r}).read()
        assert napari_glnet.__version__ == "0.1.0"
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {QT_MODULES!r})
        assert not loaded, loaded
        """
    )
    result = _run(["-c", code], cwd=REPO)
    assert result.returncode == 0, result.stderr


def test_installed_entry_point_names_the_manifest():
    from importlib.metadata import entry_points

    points = [e for e in entry_points(group="napari.manifest") if e.name == "napari-glnet"]
    if not points:
        pytest.skip("napari-glnet is not installed (pip install -e .)")
    assert points[0].value == "napari_glnet:napari.yaml"


# -- the demo, headless -------------------------------------------------------------
@pytest.mark.slow
def test_demo_headless_writes_deepglobe_colours(tmp_path, untrained_checkpoint, small_image):
    args = ["-m", "napari_glnet.demo", "--image", str(small_image), "--weights", str(untrained_checkpoint)]
    result = _run([*args, "--batch-size", "2", "--device", "cpu"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no screen" in result.stdout
    out = tmp_path / "out" / "crop_sat_glnet.png"
    assert str(out) in result.stdout
    assert out.is_file()
    with Image.open(out) as im:
        assert im.mode == "RGB" and im.size == (600, 600)
        pixels = np.asarray(im).reshape(-1, 3)
    colours = {tuple(c) for c in np.unique(pixels, axis=0).tolist()}
    assert colours <= {tuple(c) for c in DEEPGLOBE.colors.tolist()}
    fractions = [line.split()[-1] for line in result.stdout.splitlines() if line.startswith("  ")]
    assert len(fractions) == len(DEEPGLOBE)
    assert abs(sum(float(f.rstrip("%")) for f in fractions) - 100.0) < 0.1


def test_demo_without_default_image_says_so(tmp_path, untrained_checkpoint):
    result = _run(
        ["-m", "napari_glnet.demo", "--image", str(tmp_path / "missing.jpg"), "--weights", str(untrained_checkpoint)],
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2
    assert "error" in result.stderr and "missing.jpg" in result.stderr
    assert "Traceback" not in result.stderr


# -- the widget, offscreen (needs napari + Qt) -------------------------------------
WIDGET_SCRIPT = """
import sys
import time
import numpy as np
from PIL import Image
from napari.components import ViewerModel
from napari.layers import Labels
from qtpy.QtWidgets import QApplication

from glnet.classes import DEEPGLOBE
from napari_glnet._widget import SegmentWidget

app = QApplication.instance() or QApplication([])
image_path, ckpt = sys.argv[1], sys.argv[2]
viewer = ViewerModel()
image = np.asarray(Image.open(image_path).convert("RGB"))[:300, :400]
viewer.add_image(image, name="crop", rgb=True, scale=(0.5, 0.5), translate=(10, 20))
widget = SegmentWidget(viewer)
assert widget.image.value is viewer.layers["crop"]
widget.set_checkpoint(ckpt)
widget.device.value = "cpu"
widget.batch_size.value = 2
assert "CPU" in widget.note.value  # (.visible is False until the dock is shown)

def run_to_end():
    assert widget.start() is not None
    deadline = time.monotonic() + 240
    while widget.running and time.monotonic() < deadline:  # the worker's signals arrive queued
        app.processEvents()
        time.sleep(0.01)
    assert not widget.running

run_to_end()  # no canvas (a ViewerModel): the "view" is the whole image
labels = viewer.layers["GLNet labels"]
assert isinstance(labels, Labels)
data = np.asarray(labels.data)
assert data.shape == (300, 400) and data.dtype == np.uint8
assert tuple(labels.scale) == (0.5, 0.5) and tuple(labels.translate) == (10, 20)
assert data.max() < len(DEEPGLOBE)
for i, rgb in enumerate(DEEPGLOBE.colors):
    assert np.allclose(labels.colormap.map(np.array([i]))[0][:3], rgb / 255), i
run_to_end()  # a second run updates the same layers
# the model's confidence sits under the labels (napari_glnet.guided)
assert [layer.name for layer in viewer.layers] == ["crop", "GLNet uncertainty", "GLNet overview", "GLNet labels"]

# a bad checkpoint: one line through napari's notifications, no worker started
from napari.utils.notifications import notification_manager
seen = []
notification_manager.notification_ready.connect(lambda n: seen.append(n))
widget.set_checkpoint(image_path)  # an image, not a checkpoint
run_to_end()
assert any("not a" in str(n.message) for n in seen), [str(n.message) for n in seen]
while widget._classes_worker is not None:  # the class table is read in a worker: let it end first
    app.processEvents()
    time.sleep(0.01)
assert "not a" in widget.classes.value
print("WIDGET OK")
"""


@pytest.mark.slow
def test_widget_segments_a_layer_offscreen(tmp_path, untrained_checkpoint, small_image):
    pytest.importorskip("napari")
    pytest.importorskip("qtpy")
    script = tmp_path / "widget_check.py"
    script.write_text(WIDGET_SCRIPT)
    result = _run(
        [str(script), str(small_image), str(untrained_checkpoint)],
        cwd=tmp_path,
        QT_QPA_PLATFORM="offscreen",
        GLNET_CACHE_DIR=str(tmp_path / "cache"),
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "WIDGET OK" in result.stdout
