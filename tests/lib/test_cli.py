"""The `glnet` command end to end on a real DeepGlobe image."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from glnet.checkpoint import load_checkpoint
from glnet.classes import DEEPGLOBE
from glnet.cli import main
from glnet.io.labels import read_label, write_label

from helpers.reference import evaluate


@pytest.fixture(scope="module")
def real_crop(tmp_path_factory, real_image):
    """A 1000 x 900 crop of a real DeepGlobe scene (3 x 2 patches of 508).

    (At 1016 px the reference itself crashes: its global crops overhang the map.)"""
    path = tmp_path_factory.mktemp("img") / "crop_sat.png"
    Image.fromarray(real_image[700:1700, 1000:1900]).save(path)
    return path


@pytest.mark.slow
def test_segment_local2global_reproduces_the_authors_pipeline(tmp_path, authors_files, real_crop):
    out, logits = tmp_path / "pred.png", tmp_path / "logits.npy"
    args = [
        "--mode",
        "local2global",
        "--weights",
        str(authors_files["local"]),
        "--global-weights",
        str(authors_files["global"]),
    ]
    assert main(["segment", str(real_crop), "-o", str(out), "--logits", str(logits), "--batch-size", "4", *args]) == 0
    oracle = load_checkpoint(authors_files["local"], mode="local2global", global_path=authors_files["global"])
    image = np.asarray(Image.open(real_crop))
    scores = evaluate(oracle.model, image, "local2global", global_model=oracle.global_model)
    labels = read_label(out)
    assert labels.shape == image.shape[:2]
    assert (labels == scores.argmax(0)).mean() > 0.9999
    assert len(np.unique(labels)) > 2
    mean = np.load(logits)
    assert mean.dtype == np.float32 and mean.shape == (7, *image.shape[:2])
    assert (mean.argmax(0) == labels).mean() > 0.9999


def test_segment_global_on_a_full_real_scene_with_colours(tmp_path, authors_files, real_image_path, real_image):
    out = tmp_path / "pred_color.png"
    logits = tmp_path / "g.npy"
    rc = main(
        [
            "segment",
            str(real_image_path),
            "-o",
            str(out),
            "--color",
            "--logits",
            str(logits),
            "--mode",
            "global",
            "--weights",
            str(authors_files["global"]),
        ]
    )
    assert rc == 0
    rgb = np.asarray(Image.open(out).convert("RGB"))
    assert rgb.shape == real_image.shape
    assert {tuple(c) for c in np.unique(rgb.reshape(-1, 3), axis=0)} <= {tuple(c) for c in DEEPGLOBE.colors}
    oracle = load_checkpoint(authors_files["global"], mode="global")
    expected = evaluate(oracle.model, real_image, "global")
    np.testing.assert_allclose(np.load(logits), expected, atol=1e-4)


def test_region_option_writes_only_the_region(tmp_path, authors_files, real_crop):
    out = tmp_path / "region.png"
    assert (
        main(
            [
                "segment",
                str(real_crop),
                "-o",
                str(out),
                "--region",
                "10,20,110,320",
                "--mode",
                "global",
                "--weights",
                str(authors_files["global"]),
            ]
        )
        == 0
    )
    assert read_label(out).shape == (100, 300)


def test_errors_are_one_line_and_exit_2(tmp_path, authors_files, real_crop, capsys):
    existing = tmp_path / "exists.png"
    existing.write_bytes(b"keep me")
    base = ["segment", str(real_crop), "--mode", "global", "--weights", str(authors_files["global"])]
    cases = [
        ([*base, "-o", str(existing)], "--overwrite"),
        ([*base, "-o", str(real_crop)], "input image"),
        ([*base, "-o", str(tmp_path / "x.jpg")], ".png"),
        ([*base, "-o", str(tmp_path / "a.png"), "--region", "1,2,3"], "four integers"),
        (
            [
                "segment",
                str(tmp_path / "missing.jpg"),
                "-o",
                str(tmp_path / "b.png"),
                "--mode",
                "global",
                "--weights",
                str(authors_files["global"]),
            ],
            "not found",
        ),
        (
            ["segment", str(real_crop), "-o", str(tmp_path / "c.png"), "--weights", str(tmp_path / "none.pth")],
            "not found",
        ),
    ]
    for argv, expected in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("glnet: error:") and expected in err and "\n" not in err, err
    assert existing.read_bytes() == b"keep me"


def test_evaluate_files_and_folders(tmp_path, capsys):
    rng = np.random.default_rng(0)
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir(), pred_dir.mkdir()
    from glnet.metrics import ConfusionMatrix

    cm = ConfusionMatrix(7)
    for i in range(3):
        gt = rng.integers(0, 7, (40, 50)).astype(np.uint8)
        pred = np.where(rng.random((40, 50)) < 0.7, gt, rng.integers(0, 7, (40, 50))).astype(np.uint8)
        write_label(gt_dir / f"{i}_mask.png", gt, color=True)  # DeepGlobe colour masks
        write_label(pred_dir / f"{i}_pred.png", pred)  # index masks
        cm.update(gt, pred)
    assert main(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir), "--exclude", "0", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 3
    assert report["mean_iou"] == pytest.approx(cm.scores(exclude=(0,)).mean_iou)
    assert main(["evaluate", "--pred", str(pred_dir / "0_pred.png"), "--gt", str(gt_dir / "0_mask.png")]) == 0
    assert "urban" in capsys.readouterr().out
    (pred_dir / "2_pred.png").unlink()
    assert main(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir)]) == 2
    assert "no prediction" in capsys.readouterr().err


def test_evaluate_runs_a_model_over_a_deepglobe_folder(tmp_path, tiny_models, real_image, capsys):
    from helpers import save_authors_layout

    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(real_image[:300, :260]).save(data / "1_sat.jpg")
    write_label(data / "1_mask.png", np.zeros((300, 260), np.uint8), table=DEEPGLOBE, color=True)
    ckpt = save_authors_layout(tiny_models[0], tmp_path / "tiny.pth")
    # 5-class weights against 7-class DeepGlobe masks still read: masks are decoded with the model's table
    rc = main(
        [
            "evaluate",
            "--data",
            str(data),
            "--weights",
            str(ckpt),
            "--mode",
            "global2local",
            "--size-g",
            "96",
            "--size-p",
            "96",
            "--json",
        ]
    )
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["images"] == 1


def test_python_dash_m_and_console_script():
    out = subprocess.run([sys.executable, "-m", "glnet", "segment", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--global-weights" in out.stdout and "examples:" in out.stdout
