"""Training on another class set: class-table files, and only the classifier
layers starting afresh (a 7-class DeepGlobe model -> buildings vs background)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from glnet.checkpoint import GLNetCheckpoint, load_checkpoint, save_checkpoint
from glnet.classes import DEEPGLOBE, ClassInfo, ClassTable, read_class_table
from glnet.data.synthetic import URBAN, SyntheticScene
from glnet.errors import GLNetError
from glnet.io.labels import index_to_colors
from glnet.model import CLASSIFIERS, GLNet, GLNetConfig
from glnet.train.config import TrainConfig
from glnet.train.start import initial_checkpoint

from helpers.reference import seeded_weights

BINARY = ClassTable((ClassInfo("background", (0, 0, 0)), ClassInfo("building", (255, 0, 0))))
TINY = {"size_g": 64, "size_p": 96, "batch_size": 2, "sub_batch_size": 4, "device": "cpu"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def binary_dir(tmp_path_factory) -> Path:
    """Buildings vs background in the DeepGlobe layout, colour masks in BINARY's colours."""
    d = tmp_path_factory.mktemp("binary")
    for seed in range(2):
        rgb, labels = SyntheticScene(128, 128, seed=seed).render(0, 0, 128, 128)
        Image.fromarray(rgb).save(d / f"{seed}_sat.png")
        Image.fromarray(index_to_colors((labels == URBAN).astype(np.uint8), BINARY)).save(d / f"{seed}_mask.png")
    return d


@pytest.fixture(scope="module")
def classes_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("classes") / "buildings.csv"
    path.write_text("name,color\nbackground,#000000\nbuilding,#ff0000\n")
    return path


def _save(tmp_path: Path, mode: str, seed: int) -> Path:
    """A 7-class checkpoint of ``mode`` with varied (seeded) weights."""
    cfg = GLNetConfig(7, "resnet18", 32)
    model = seeded_weights(GLNet(cfg, global_only=mode == "global"), seed)
    fixed = seeded_weights(GLNet(cfg, global_only=True), seed + 1) if mode == "local2global" else None
    path = tmp_path / f"{mode}7.pt"
    save_checkpoint(GLNetCheckpoint(mode, model, DEEPGLOBE, fixed, size_g=64, size_p=96), path)
    return path


def _is_classifier(key: str) -> bool:
    return key.startswith(tuple(c + "." for c in CLASSIFIERS))


def _assert_only_classifiers_changed(before: GLNet, after: GLNet, num_classes: int) -> None:
    old, new = before.state_dict(), after.state_dict()
    assert old.keys() == new.keys()  # the authors' key layout is kept
    for k, v in old.items():
        if _is_classifier(k):
            assert new[k].shape[0] == num_classes != v.shape[0], k
            assert new[k].shape[1:] == v.shape[1:], k
        else:
            assert torch.equal(new[k], v), k


def test_class_table_files(tmp_path, classes_csv):
    assert read_class_table(classes_csv) == BINARY
    as_json = tmp_path / "t.json"
    as_json.write_text(
        json.dumps([{"name": "background", "color": "#000000"}, {"name": "building", "color": [255, 0, 0]}])
    )
    assert read_class_table(as_json) == BINARY
    (tmp_path / "deepglobe.json").write_text(json.dumps(DEEPGLOBE.to_list()))
    assert read_class_table(tmp_path / "deepglobe.json") == DEEPGLOBE
    bad = tmp_path / "bad.csv"
    bad.write_text("background,#000000\nbuilding,#ff00\n")
    with pytest.raises(GLNetError, match="line 2.*#rrggbb"):
        read_class_table(bad)
    with pytest.raises(GLNetError, match="cannot read"):
        read_class_table(tmp_path / "missing.csv")


@pytest.mark.parametrize("mode", ["global", "global2local"])
def test_other_classes_reinitialise_only_the_classifiers(tmp_path, binary_dir, mode):
    src_path = _save(tmp_path, mode, seed=3)
    src = load_checkpoint(src_path)
    config = TrainConfig(
        data=binary_dir,
        mode=mode,
        output=tmp_path / "x.pt",
        init_from=src_path,
        classes=BINARY,
        finetune=mode != "global",
        **TINY,
    )
    ckpt = initial_checkpoint(config)
    assert ckpt.classes == BINARY and ckpt.config.num_classes == 2
    _assert_only_classifiers_changed(src.model, ckpt.model, 2)
    w = ckpt.model.fpn_global.classify.weight
    assert 0.005 < float(w.std()) < 0.015 and not ckpt.model.fpn_global.classify.bias.any()  # the authors' init


def test_same_names_keep_the_classifiers(tmp_path, binary_dir):
    src_path = _save(tmp_path, "global", seed=4)
    recoloured = ClassTable(
        tuple(ClassInfo(c.name, (c.color[0], c.color[1], 255 - c.color[2])) for c in DEEPGLOBE.classes)
    )
    ckpt = initial_checkpoint(
        TrainConfig(
            data=binary_dir, mode="global", output=tmp_path / "x.pt", init_from=src_path, classes=recoloured, **TINY
        )
    )
    assert ckpt.classes == recoloured
    old = load_checkpoint(src_path).model.state_dict()
    assert all(torch.equal(v, old[k]) for k, v in ckpt.model.state_dict().items())


def test_local2global_needs_a_fixed_global_model_on_the_new_classes(tmp_path, binary_dir):
    g2l = _save(tmp_path, "global2local", seed=5)
    with pytest.raises(GLNetError, match="fixed global model predicts 7 classes, the data has 2"):
        initial_checkpoint(
            TrainConfig(
                data=binary_dir, mode="local2global", output=tmp_path / "x.pt", init_from=g2l, classes=BINARY, **TINY
            )
        )


def test_cli_trains_a_deepglobe_model_to_buildings(tmp_path, binary_dir, classes_csv):
    """glnet train --from a 7-class global checkpoint --classes FILE: the new
    checkpoint records the file's names and colours."""
    from glnet.cli import main

    src = _save(tmp_path, "global", seed=6)
    out = tmp_path / "buildings.pt"
    argv = [
        "train",
        "--mode",
        "global",
        "--from",
        str(src),
        "--classes",
        str(classes_csv),
        "--data",
        str(binary_dir),
        "-o",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--size-g",
        "64",
        "--size-p",
        "96",
        "--device",
        "cpu",
        "--val-fraction",
        "0.5",
        "--lr",
        "1e-4",
    ]
    assert main(argv) == 0
    ckpt = load_checkpoint(out)
    assert ckpt.classes == read_class_table(classes_csv) and ckpt.config.num_classes == 2
    assert ckpt.extra["epoch"] == 1 and np.isfinite(ckpt.extra["val_miou"])
    assert (tmp_path / "buildings.log.png").stat().st_size > 1000  # the loss/mIoU curves
    old = load_checkpoint(src).model.state_dict()
    new = ckpt.model.state_dict()
    assert all(new[k].shape == old[k].shape for k in old if not _is_classifier(k))
