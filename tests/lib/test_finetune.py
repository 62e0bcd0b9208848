"""Fine-tuning on exported corrections: mIoU on the held-out tiles improves,
the source checkpoint is never overwritten, and a GUI can stop it."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from glnet.checkpoint import load_checkpoint, save_checkpoint
from glnet.classes import DEEPGLOBE
from glnet.data.synthetic import SyntheticScene
from glnet.errors import GLNetError
from glnet.store.export import export_tiles
from glnet.store.labelstore import LabelStore
from glnet.train import FinetuneConfig, finetune
from glnet.train.config import TrainConfig
from glnet.train.finetune import check_outputs
from glnet.train.start import initial_checkpoint

SCENE, TILE = 384, 128  # 9 tiles: 6 for training, 3 held out
TINY = {"size_g": 64, "size_p": 96, "device": "cpu"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    """The plugin's path to an export: a label store holding a poor prediction
    (everything "agriculture"), corrected from the ground truth region by
    region as a person would, then the corrected regions exported."""
    d = tmp_path_factory.mktemp("corrections")
    rgb, truth = SyntheticScene(SCENE, SCENE, seed=11).render(0, 0, SCENE, SCENE)
    store = LabelStore.create(
        d / "scene.zarr", (SCENE, SCENE), DEEPGLOBE, chunk=128, min_size=64, attrs={"source_image": "scene.png"}
    )
    store.write((0, 0, SCENE, SCENE), np.full((SCENE, SCENE), 2, np.uint8), edit=False)
    for top in range(0, SCENE, TILE):
        for left in range(0, SCENE, TILE):
            region = (top, left, top + TILE, left + TILE)
            store.write(region, truth[top : top + TILE, left : left + TILE], edit=True)
    export_tiles(store, rgb, d / "export", tile=TILE, which="corrected", image_format="png", val_fraction=0.34)
    return d / "export"


@pytest.fixture(scope="module")
def poor_model(tmp_path_factory) -> Path:
    """A small global model that has learnt nothing yet (the authors' init)."""
    path = tmp_path_factory.mktemp("model") / "poor.pt"
    config = TrainConfig(
        data=path.parent,
        mode="global",
        output=path,
        backbone="resnet18",
        fpn_width=32,
        backbone_width=16,
        seed=1,
        **TINY,
    )
    save_checkpoint(initial_checkpoint(config), path)
    return path


def test_finetuning_on_corrections_improves_held_out_miou(export_dir, poor_model, tmp_path):
    before_bytes = poor_model.read_bytes()
    seen = []
    config = FinetuneConfig(
        source=poor_model, data=export_dir, output=tmp_path / "tuned.pt", epochs=6, lr=2e-3, device="cpu"
    )
    result = finetune(config, on_batch=lambda *a: seen.append(a))
    assert (result.train_tiles, result.val_tiles) == (6, 3)
    assert result.output == tmp_path / "tuned.pt" and result.epochs == 6 and not result.stopped
    assert np.isfinite(result.miou_before) and result.miou_after > result.miou_before + 0.05, result
    assert result.improved
    assert {e for e, *_ in seen} == set(range(6)) and seen[-1][1:3] == (3, 3)  # 3 batches of 2 tiles per epoch
    tuned = load_checkpoint(result.output)
    assert tuned.mode == "global" and tuned.classes == DEEPGLOBE
    assert tuned.extra["val_miou"] == pytest.approx(result.miou_after)
    for name in ("tuned.last.pt", "tuned.log.csv", "tuned.log.png"):
        assert (tmp_path / name).is_file(), name
    assert poor_model.read_bytes() == before_bytes  # the source is untouched


def test_finetune_trains_a_later_stage_and_can_be_stopped(export_dir, poor_model, tmp_path):
    """From a global checkpoint, the global2local stage (a new local branch);
    should_stop after the second batch ends it with nothing saved."""
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) >= 2

    config = FinetuneConfig(
        source=poor_model, data=export_dir, output=tmp_path / "g2l.pt", stage="global2local", epochs=2, device="cpu"
    )
    result = finetune(config, should_stop=stop)
    assert result.stopped and result.epochs == 0 and result.output is None
    assert math.isnan(result.miou_after) and np.isfinite(result.miou_before)
    assert not (tmp_path / "g2l.pt").exists()


def test_refuses_to_overwrite_the_source(export_dir, poor_model, tmp_path):
    from glnet.cli import main

    before = poor_model.read_bytes()
    with pytest.raises(GLNetError, match="is the source checkpoint"):
        finetune(FinetuneConfig(source=poor_model, data=export_dir, output=poor_model, overwrite=True))
    link = tmp_path / "link.pt"
    os.link(poor_model, link)  # another name, the same file
    with pytest.raises(GLNetError, match="is the source checkpoint"):
        check_outputs(poor_model, link, overwrite=True)
    with pytest.raises(GLNetError, match="written beside the output"):  # model.last.pt is the source
        check_outputs(tmp_path / "model.last.pt", tmp_path / "model.pt", overwrite=True)
    (tmp_path / "new.pt").write_bytes(b"an earlier result")
    with pytest.raises(GLNetError, match="new.pt exist.*--overwrite"):
        check_outputs(poor_model, tmp_path / "new.pt", overwrite=False)
    check_outputs(poor_model, tmp_path / "new.pt", overwrite=True)
    assert (
        main(
            [
                "finetune",
                "--from",
                str(poor_model),
                "--data",
                str(export_dir),
                "-o",
                str(poor_model),
                "--overwrite",
                "--device",
                "cpu",
            ]
        )
        == 2
    )
    assert poor_model.read_bytes() == before


@pytest.mark.slow  # ResNet-50 checkpoints in the authors' layout
def test_any_checkpoint_starts_any_later_stage(authors_files, tmp_path):
    """The authors' files (which do not record their mode) start fine-tuning:
    their local2global continues with their global file as the fixed pass,
    and their global2local gives the global stage its frozen global branch."""
    from glnet.checkpoint import load_checkpoint as load

    common = {"data": tmp_path, "output": tmp_path / "x.pt", "finetune": True, **TINY}
    l2g = initial_checkpoint(
        TrainConfig(
            mode="local2global",
            init_from=authors_files["local"],
            init_mode="local2global",
            global_from=authors_files["global"],
            **common,
        )
    )
    authors_global = load(authors_files["global"], mode="global").model.state_dict()
    fixed = l2g.global_model.state_dict()
    assert all(torch.equal(fixed[k], v) for k, v in authors_global.items())
    assert not any(p.requires_grad for p in l2g.global_model.parameters())
    g = initial_checkpoint(
        TrainConfig(mode="global", init_from=authors_files["local"], init_mode="global2local", **common)
    )
    src = load(authors_files["local"], mode="global2local").model.state_dict()
    assert g.mode == "global" and all(torch.equal(src[k], v) for k, v in g.model.state_dict().items())
    with pytest.raises(GLNetError, match="starts from a global2local or local2global one"):
        initial_checkpoint(
            TrainConfig(mode="local2global", init_from=authors_files["global"], init_mode="global", **common)
        )


def test_without_held_out_tiles_it_refuses_before_training(export_dir, poor_model, tmp_path):
    """One tile cannot be split: no minutes of training that end in "nan before, nan after"."""
    from glnet.data.dataset import read_export
    from glnet.train.finetune import held_out_tiles

    one = tmp_path / "one"
    one.mkdir()
    image, mask, _ = read_export(export_dir)[0]
    for f in (image, mask):
        (one / f.name).write_bytes(f.read_bytes())  # a DeepGlobe-layout folder of one tile
    assert held_out_tiles(one) == (1, 0) and held_out_tiles(export_dir, 0.34) == (6, 3)
    with pytest.raises(GLNetError, match="no held-out tiles .1 tile in all"):
        finetune(FinetuneConfig(source=poor_model, data=one, output=tmp_path / "t.pt", device="cpu"))
    assert not (tmp_path / "t.pt").exists()


def test_without_side_files_only_the_output_is_written(export_dir, poor_model, tmp_path):
    out = tmp_path / "only" / "tuned.pt"
    out.parent.mkdir()
    config = FinetuneConfig(source=poor_model, data=export_dir, output=out, epochs=1, device="cpu", side_files=False)
    result = finetune(config)
    assert result.output == out and sorted(p.name for p in out.parent.iterdir()) == ["tuned.pt"]
