"""Training: losses, steps per mode, checkpoints, resuming and the CLI, on tiny inputs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from glnet.checkpoint import load_checkpoint, save_checkpoint
from glnet.classes import DEEPGLOBE
from glnet.data.synthetic import SyntheticScene
from glnet.errors import GLNetError
from glnet.io.labels import index_to_colors
from glnet.model import GLNet, GLNetConfig
from glnet.train import focal_loss, train
from glnet.train.batches import SegmentationData, augment, prepare
from glnet.train.config import TrainConfig
from glnet.train.loop import sibling
from glnet.train.start import initial_checkpoint
from glnet.train.steps import freeze, set_train_mode, train_step, trained_parts

SIZE = 128  # images; size_p 96 gives a 2x2 patch grid
TINY = {
    "size_g": 64,
    "size_p": 96,
    "batch_size": 2,
    "sub_batch_size": 4,
    "device": "cpu",
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("deepglobe")
    for seed in range(3):
        rgb, labels = SyntheticScene(SIZE, SIZE, seed=seed).render(0, 0, SIZE, SIZE)
        Image.fromarray(rgb).save(d / f"{seed}_sat.png")
        Image.fromarray(index_to_colors(labels)).save(d / f"{seed}_mask.png")
    return d


def _model(global_only: bool = False) -> GLNet:
    torch.manual_seed(0)
    return GLNet(GLNetConfig(7, "resnet18", 32), global_only=global_only)


def _batch(data_dir: Path, n: int = 1):
    data = SegmentationData(
        [(data_dir / f"{i}_sat.png", data_dir / f"{i}_mask.png", "train") for i in range(n)],
        DEEPGLOBE,
    )
    return [prepare(*data.read(i), TINY["size_g"], TINY["size_p"], torch.device("cpu")) for i in range(n)]


# -- losses and data --------------------------------------------------------------
def test_focal_loss_matches_hand_computation():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0], [-30.0, 30.0, 0.0]]).T.reshape(1, 3, 1, 3)
    target = torch.tensor([[[0, 2, 0]]])
    expected = []
    for col, t in zip([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0], [-30.0, 30.0, 0.0]], [0, 2, 0]):
        e = [math.exp(v) for v in col]
        p = min(max(e[t] / sum(e), 1e-7), 1 - 1e-7)
        expected.append(-((1 - p) ** 3) * math.log(p))
    assert focal_loss(logits, target).item() == pytest.approx(sum(expected) / 3, rel=1e-5)
    # an ignore value (outside 0..C-1) is left out of the mean
    target_ignored = torch.tensor([[[0, 255, 255]]])
    assert focal_loss(logits, target_ignored).item() == pytest.approx(expected[0], rel=1e-5)


def test_augment_is_identical_for_image_and_labels_and_seeded():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, (8, 8))
    image = np.repeat(labels[..., None], 3, axis=2).astype(np.uint8)
    for seed in range(8):
        a_img, a_lab = augment(image, labels, np.random.default_rng(seed))
        b_img, _ = augment(image, labels, np.random.default_rng(seed))
        assert np.array_equal(a_img[..., 0], a_lab) and np.array_equal(a_img, b_img)


# -- one step per mode ---------------------------------------------------------------
def _losses(mode, model, images, global_model=None, steps=4, lr=1e-3):
    set_train_mode(model, mode)
    params = [p for name in trained_parts(mode) for p in getattr(model, name).parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    out = []
    for _ in range(steps):
        out.append(train_step(mode, model, images, sub_batch_size=2, global_model=global_model))
        opt.step()
        opt.zero_grad()
    return out


def _frozen_state(model: GLNet, mode: str) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items() if k.split(".")[0] not in trained_parts(mode)}


@pytest.mark.parametrize("mode", ["global", "global2local", "local2global"])
def test_steps_decrease_loss_and_keep_frozen_branch(data_dir, mode):
    torch.manual_seed(0)
    images = _batch(data_dir)
    model = _model(global_only=mode == "global")
    global_model = freeze(_model(global_only=True)) if mode == "local2global" else None
    frozen = _frozen_state(model, mode)
    losses = _losses(mode, model, images, global_model, steps=3 if mode == "local2global" else 4)
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    for k, v in model.state_dict().items():
        if k in frozen:
            assert torch.equal(v, frozen[k]), k  # weights and BatchNorm statistics
    if mode != "global":
        frozen_part = "resnet_global" if mode == "global2local" else "resnet_local"
        assert not getattr(model, frozen_part).training
        assert not any(p.requires_grad for p in getattr(model, frozen_part).parameters())


# -- checkpoints, resume, CLI ---------------------------------------------------------
def test_checkpoint_metadata_round_trip(tmp_path):
    config = TrainConfig(
        data=tmp_path,
        mode="global",
        output=tmp_path / "g.pt",
        backbone="resnet18",
        fpn_width=32,
        **TINY,
    )
    ckpt = initial_checkpoint(config)
    save_checkpoint(ckpt, tmp_path / "g.pt")
    back = load_checkpoint(tmp_path / "g.pt")
    assert (back.mode, back.classes, back.config) == (
        "global",
        DEEPGLOBE,
        GLNetConfig(7, "resnet18", 32),
    )
    assert (back.size_g, back.size_p) == (64, 96)

    config2 = TrainConfig(
        data=tmp_path,
        mode="global2local",
        output=tmp_path / "x.pt",
        init_from=tmp_path / "g.pt",
        **TINY,
    )
    g2l = initial_checkpoint(config2)
    for k, v in back.model.state_dict().items():  # the global branch is copied
        assert torch.equal(g2l.model.state_dict()[k], v), k
    with pytest.raises(GLNetError, match="global2local"):  # a global checkpoint is not a global2local one
        initial_checkpoint(
            TrainConfig(
                data=tmp_path,
                mode="local2global",
                output=tmp_path / "y.pt",
                init_from=tmp_path / "g.pt",
                global_from=tmp_path / "g.pt",
                **TINY,
            )
        )


def _global_config(
    data_dir: Path, out: Path, epochs: int, resume: bool = False, lr: float | None = 1e-3
) -> TrainConfig:
    return TrainConfig(
        data=data_dir,
        mode="global",
        output=out,
        epochs=epochs,
        resume=resume,
        lr=lr,
        backbone="resnet18",
        fpn_width=32,
        val_fraction=0.34,
        **TINY,
    )


def test_resume_continues_identically(data_dir, tmp_path):
    torch.use_deterministic_algorithms(True)
    try:
        config = _global_config(data_dir, tmp_path / "a.pt", epochs=2, lr=None)  # the stage's default rate
        straight = train(config)
        assert config.lr is None, "train() leaves the caller's config as it was"

        class Stop(Exception):
            pass

        def stop(epoch, done, total, loss):  # an interruption at the start of the second epoch
            if epoch == 1:
                raise Stop

        with pytest.raises(Stop):
            train(_global_config(data_dir, tmp_path / "b.pt", epochs=2, lr=None), on_batch=stop)
        seen = []
        train(
            _global_config(data_dir, tmp_path / "b.pt", epochs=2, resume=True, lr=None),
            on_batch=lambda e, *_: seen.append(e),
        )
        assert set(seen) == {1}  # only the second epoch ran again
    finally:
        torch.use_deterministic_algorithms(False)
    a = load_checkpoint(sibling(tmp_path / "a.pt", "last")).model.state_dict()
    b = load_checkpoint(sibling(tmp_path / "b.pt", "last")).model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows = (tmp_path / "b.log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["epoch", "1", "2"]
    assert straight == tmp_path / "a.pt" and straight.is_file()


def test_cli_trains_all_three_stages(data_dir, tmp_path):
    from glnet.cli import main

    common = [
        "--data",
        str(data_dir),
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--sub-batch-size",
        "4",
        "--size-g",
        "64",
        "--size-p",
        "96",
        "--device",
        "cpu",
        "--val-fraction",
        "0.34",
    ]
    g, g2l, l2g = tmp_path / "g.pt", tmp_path / "g2l.pt", tmp_path / "l2g.pt"
    assert (
        main(
            [
                "train",
                "--mode",
                "global",
                "-o",
                str(g),
                "--backbone",
                "resnet18",
                "--fpn-width",
                "32",
                *common,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                "--mode",
                "global2local",
                "--from",
                str(g),
                "-o",
                str(g2l),
                *common,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                "--mode",
                "local2global",
                "--from",
                str(g2l),
                "--global-from",
                str(g),
                "-o",
                str(l2g),
                *common,
            ]
        )
        == 0
    )
    ckpt = load_checkpoint(l2g)
    assert ckpt.mode == "local2global" and ckpt.global_model is not None
    fixed = load_checkpoint(g).model.state_dict()
    assert all(torch.equal(ckpt.global_model.state_dict()[k], v) for k, v in fixed.items())
    assert main(["train", "--mode", "global2local", "-o", str(tmp_path / "x.pt"), *common]) != 0  # no --from
