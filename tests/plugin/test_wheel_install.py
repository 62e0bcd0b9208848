"""Installed as users install napari plugins: the built wheel, in a fresh
virtualenv, away from the source tree, gives a working plugin (the demo model
inside the package, the sample scene, the widget segmenting it).

The wheel is built from a copy of the tracked files (the checkout is not
touched).  The fresh venv reuses the suite's installed dependencies (torch,
napari, ...) through a folder of links to them that leaves out this
project's own (editable) install, so nothing can come from the source tree;
the smoke check asserts it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from helpers import REPO

pytestmark = pytest.mark.slow

SMOKE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path

    venv = Path(sys.prefix).resolve()
    import glnet, napari_glnet
    for module in (glnet, napari_glnet):
        assert Path(module.__file__).resolve().is_relative_to(venv), module.__file__
    from napari_glnet._sample_data import demo_checkpoint
    ckpt = demo_checkpoint()
    assert ckpt is not None and Path(ckpt).resolve().is_relative_to(venv), ckpt

    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=False)
    viewer.open_sample("napari-glnet", "synthetic_scene")
    _, widget = viewer.window.add_plugin_dock_widget("napari-glnet", "GLNet segmentation")
    widget.set_checkpoint(ckpt)
    widget.device.value = "cpu"
    widget.image.value = viewer.layers["synthetic scene"]
    widget.controller.segment_region((0, 0, 256, 256))
    end = time.monotonic() + 600
    while widget.running and time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.05)
    labels = widget.controller.session.store.read((0, 0, 256, 256))
    truth = viewer.layers["ground truth"].data[:256, :256]
    print("STATUS", widget.status.value)
    print("AGREES", float((labels == truth).mean()))
    viewer.close()
    """
)


def _tracked_copy(dst: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        src = REPO / name
        if src.is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)
    return dst


def _dependencies_without_us(dst: Path) -> Path:
    """Links to the suite's installed packages, leaving this project's install out."""
    site = Path(sysconfig.get_paths()["purelib"])
    dst.mkdir()
    for entry in site.iterdir():
        name = entry.name.lower()
        if "glnet" in name or name.startswith(("__editable__", "_virtualenv")) or name.endswith(".pth"):
            continue
        (dst / entry.name).symlink_to(entry)
    return dst


def test_the_built_wheel_installs_and_works_in_a_fresh_venv(tmp_path):
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout to know the tracked files")
    source = _tracked_copy(tmp_path / "src")
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("napari_glnet-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    venv_site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    deps = _dependencies_without_us(tmp_path / "deps")
    (venv_site / "suite_dependencies.pth").write_text(f"{deps}\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(venv_site), str(wheel)],
        check=True,
        capture_output=True,
    )
    assert (venv_site / "napari_glnet" / "data" / "demo.glnet.pt").is_file()  # the model ships inside

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(QT_QPA_PLATFORM="offscreen", GLNET_CACHE_DIR=str(tmp_path / "cache"), PYTHONNOUSERSITE="1")
    result = subprocess.run([str(python), "-c", SMOKE], cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    status = next(line for line in result.stdout.splitlines() if line.startswith("STATUS"))
    agrees = float(next(line for line in result.stdout.splitlines() if line.startswith("AGREES")).split()[1])
    assert "done: refined rows 0-256" in status
    assert agrees > 0.5  # the trained demo model, not random weights
