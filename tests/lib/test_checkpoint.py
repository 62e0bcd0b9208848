"""Checkpoints: the authors' files load unchanged; ours round-trip; bad files say why."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from glnet.checkpoint import GLNetCheckpoint, load_checkpoint, save_checkpoint
from glnet.classes import DEEPGLOBE, ClassTable
from glnet.constants import Mode
from glnet.errors import GLNetError
from glnet.inference.engine import Segmenter
from glnet.model import GLNet, GLNetConfig

from helpers import save_authors_layout, tiny_config
from helpers.reference import seeded_weights


def test_authors_layout_has_their_718_keys_and_parameter_count():
    model = GLNet(GLNetConfig(7))
    sd = model.state_dict()
    assert len(sd) == 718
    assert sum(p.numel() for p in model.parameters()) == 79_200_917
    for key in (
        "resnet_global.layer1.0.downsample.0.weight",
        "resnet_local.layer4.2.bn3.running_var",
        "fpn_global.smooth4_2_ext.weight",
        "fpn_local.smooth.weight",
        "ensemble_conv.bias",
    ):
        assert key in sd


@pytest.mark.parametrize("mode", ["global", "global2local", "local2global"])
def test_authors_files_load_for_each_mode(authors_files, mode):
    path = authors_files["global" if mode == "global" else "local"]
    ckpt = load_checkpoint(path, mode=mode, global_path=authors_files["global"] if mode == "local2global" else None)
    assert ckpt.mode == mode and len(ckpt.classes) == 7 and ckpt.classes.names[1] == "urban"
    raw = {k.removeprefix("module."): v for k, v in torch.load(path, weights_only=True).items()}
    for key, value in ckpt.model.state_dict().items():
        assert torch.equal(value, raw[key]), key
    if mode == "local2global":
        graw = torch.load(authors_files["global"], weights_only=True)
        assert torch.equal(
            ckpt.global_model.state_dict()["fpn_global.classify.weight"], graw["module.fpn_global.classify.weight"]
        )


def test_unprefixed_and_zipfile_state_dicts_load_too(tmp_path, tiny_models):
    model = tiny_models[0]
    save_authors_layout(model, tmp_path / "plain.pth", prefix="")
    torch.save({"state_dict": {"module." + k: v for k, v in model.state_dict().items()}}, tmp_path / "wrapped.pth")
    for name in ("plain.pth", "wrapped.pth"):
        ckpt = load_checkpoint(tmp_path / name, mode="global2local")
        assert ckpt.config == tiny_config() and len(ckpt.classes) == 5


def test_our_format_round_trips_everything(tmp_path, tiny_models):
    model, fixed = tiny_models
    table = ClassTable.from_list([{"name": f"c{i}", "color": [i * 40, 255 - i * 40, 7]} for i in range(5)])
    ckpt = GLNetCheckpoint("local2global", model, table, fixed, size_g=96, size_p=96, input_mean=(0.1, 0.2, 0.3))
    save_checkpoint(ckpt, tmp_path / "ours.pt")
    back = load_checkpoint(tmp_path / "ours.pt")
    assert (back.mode, back.size_g, back.size_p, back.input_mean) == ("local2global", 96, 96, (0.1, 0.2, 0.3))
    assert back.mode is Mode.LOCAL2GLOBAL
    assert type(torch.load(tmp_path / "ours.pt", weights_only=True)["mode"]) is str  # plain strings in the file
    assert back.classes == table and back.config == model.config
    for a, b in ((model, back.model), (fixed, back.global_model)):
        for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(v, w), k
    image = np.random.default_rng(0).integers(0, 255, (150, 140, 3), dtype=np.uint8)
    a = Segmenter(ckpt, device="cpu").segment(image)
    b = Segmenter(back, device="cpu").segment(image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not list(tmp_path.glob(".*tmp")), "atomic save leaves no temporary file"


def test_half_precision_save_is_small_and_loads_as_fp32(tmp_path, tiny_models):
    ckpt = GLNetCheckpoint("global2local", tiny_models[0], ClassTable.default(5))
    save_checkpoint(ckpt, tmp_path / "full.pt")
    save_checkpoint(ckpt, tmp_path / "half.pt", half=True)
    assert (tmp_path / "half.pt").stat().st_size < 0.6 * (tmp_path / "full.pt").stat().st_size
    back = load_checkpoint(tmp_path / "half.pt")
    assert back.model.fpn_local.smooth.weight.dtype == torch.float32


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def test_bad_files_give_one_line_errors(tmp_path, tiny_models):
    good = save_authors_layout(tiny_models[0], tmp_path / "good.pth")
    cases = {}
    (tmp_path / "empty.pth").write_bytes(b"")
    cases["empty.pth"] = "empty"
    (tmp_path / "noise.pth").write_bytes(np.random.default_rng(0).bytes(5000))
    cases["noise.pth"] = "not a"
    (tmp_path / "truncated.pth").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cases["truncated.pth"] = "truncated"
    (tmp_path / "object.pth").write_bytes(pickle.dumps({"net": GLNetError("x")}, protocol=2))
    cases["object.pth"] = "Python objects"
    torch.save({"module.foo": torch.zeros(1)}, tmp_path / "other.pth")
    cases["other.pth"] = "not a GLNet checkpoint"
    for name, expected in cases.items():
        with pytest.raises(GLNetError) as e:
            load_checkpoint(tmp_path / name, mode="global2local")
        assert expected in one_line(e) and name in str(e.value), (name, str(e.value))
    with pytest.raises(GLNetError, match="not found"):
        load_checkpoint(tmp_path / "nope.pth", mode="global")


def test_missing_keys_wrong_classes_and_missing_global_are_named(tmp_path, tiny_models):
    model = tiny_models[0]
    sd = {"module." + k: v for k, v in model.state_dict().items() if not k.startswith("fpn_local.smooth4")}
    torch.save(sd, tmp_path / "partial.pth")
    with pytest.raises(GLNetError) as e:
        load_checkpoint(tmp_path / "partial.pth", mode="global2local")
    assert "missing keys" in one_line(e) and "fpn_local.smooth4" in str(e.value)
    # the same file is fine for global mode, which never reads the local branch
    assert load_checkpoint(tmp_path / "partial.pth", mode="global").mode == "global"

    good = save_authors_layout(model, tmp_path / "l2g.pth")
    other = save_authors_layout(seeded_weights(GLNet(tiny_config(3), global_only=True), 4), tmp_path / "g3.pth")
    with pytest.raises(GLNetError) as e:
        load_checkpoint(good, mode="local2global", global_path=other)
    assert "wrong class count" in one_line(e) and "3 classes" in str(e.value)
    with pytest.raises(GLNetError, match="--global-weights"):
        load_checkpoint(good, mode="local2global")
    with pytest.raises(GLNetError, match="--mode"):
        load_checkpoint(good)
    with pytest.raises(GLNetError, match="wrong class count"):
        load_checkpoint(good, mode="global2local", classes=ClassTable.default(7))


def test_wrong_shapes_are_reported(tmp_path, tiny_models):
    sd = {"module." + k: v for k, v in tiny_models[0].state_dict().items()}
    sd["module.ensemble_conv.weight"] = torch.zeros(6, 128, 3, 3)
    torch.save(sd, tmp_path / "shape.pth")
    with pytest.raises(GLNetError) as e:
        load_checkpoint(tmp_path / "shape.pth", mode="global2local")
    assert "wrong shape" in one_line(e) and "ensemble_conv.weight" in str(e.value)


def test_our_checkpoint_refuses_a_conflicting_mode(tmp_path, tiny_models):
    save_checkpoint(GLNetCheckpoint("global2local", tiny_models[0], ClassTable.default(5)), tmp_path / "g2l.pt")
    with pytest.raises(GLNetError, match="is a global2local checkpoint"):
        load_checkpoint(tmp_path / "g2l.pt", mode="local2global")


def test_narrow_backbone_round_trips_and_keeps_torchvision_keys(tmp_path):
    """A narrow trunk (the CPU demo model's) has the same keys as a full one,
    and its width is read back from our format and from a bare state_dict."""
    narrow = seeded_weights(GLNet(GLNetConfig(7, "resnet18", 32, backbone_width=24)), 3)
    full = GLNet(GLNetConfig(7, "resnet18", 32))
    assert narrow.state_dict().keys() == full.state_dict().keys()
    assert narrow.state_dict()["resnet_local.layer4.1.conv2.weight"].shape[0] == 8 * 24
    save_checkpoint(GLNetCheckpoint("global2local", narrow, DEEPGLOBE), tmp_path / "n.pt")
    ours = load_checkpoint(tmp_path / "n.pt")
    bare = load_checkpoint(save_authors_layout(narrow, tmp_path / "n.pth"), mode="global2local")
    image = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    for ckpt in (ours, bare):
        assert ckpt.config.backbone_width == 24
        seg = Segmenter(ckpt, size_g=64, size_p=64)
        assert seg.segment(image).labels.shape == (96, 96)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_text("model weights, honest\n") and p, "not a PyTorch checkpoint"),
        (lambda p: p.mkdir() or p, "is a folder, not a checkpoint file"),
        (lambda p: Path("/dev/null"), "not a regular file"),
    ],
    ids=["text file", "folder", "device"],
)
def test_what_is_not_a_checkpoint_says_so_in_one_line(tmp_path, make, message):
    path = make(tmp_path / "model.pt")
    with pytest.raises(GLNetError, match=message) as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value)
