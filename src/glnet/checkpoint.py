"""Loading the authors' GLNet checkpoints and reading/writing our own.

The authors' files (``fpn_deepglobe_{global,global2local,local2global}.pth``)
are plain state_dicts saved from ``nn.DataParallel`` (every key prefixed
``module.``), each holding all 718 keys; which mode a file is for is not in
the file, so the caller names it.  Their local2global also needs the global
file for its fixed global branch.

Our format is one self-describing file: the weights plus what a user would
otherwise have to remember (mode, classes with names and colours, sizes,
input scaling, backbone), and for local2global both weight sets.

Every failure is a ``GLNetError`` with one line naming the file and what is
wrong: never a traceback for a bad file.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from glnet.atomic import atomic_write
from glnet.classes import DEEPGLOBE, ClassTable
from glnet.constants import Mode
from glnet.errors import GLNetError
from glnet.model import GLNet, GLNetConfig
from glnet.model.resnet import BACKBONES

log = logging.getLogger(__name__)

FORMAT = "napari-glnet"
FORMAT_VERSION = 1
_RESNET_DEPTHS = {
    "resnet18": [2, 2, 2, 2],
    "resnet34": [3, 4, 6, 3],
    "resnet50": [3, 4, 6, 3],
    "resnet101": [3, 4, 23, 3],
}


@dataclass
class GLNetCheckpoint:
    """Everything needed to run one mode of GLNet on images."""

    mode: Mode
    model: GLNet
    classes: ClassTable
    global_model: GLNet | None = None  # local2global: the fixed global branch
    size_g: int = 508
    size_p: int = 508
    # the image size the model was trained on (DeepGlobe: 2448); larger
    # images are tiled into scenes of this size (see glnet.inference.scenes)
    scene_size: int = 2448
    input_mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    input_std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    source: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mode = Mode.parse(self.mode)

    @property
    def config(self) -> GLNetConfig:
        return self.model.config


# -- reading files ---------------------------------------------------------
def _read(path: str | os.PathLike) -> dict:
    path = Path(path)
    if path.is_dir():
        raise GLNetError(f"{path} is a folder, not a checkpoint file")
    if path.exists() and not path.is_file():
        raise GLNetError(f"{path} is not a regular file (a device or a pipe?), not a checkpoint")
    if not path.is_file():
        raise GLNetError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise GLNetError(f"{path} is empty: not a checkpoint")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of non-checkpoints
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e):
            raise GLNetError(
                f"{path} holds Python objects besides weights; only state_dicts and napari-glnet checkpoints load"
            ) from None
        raise GLNetError(f"{path} is not a PyTorch checkpoint (or is truncated)") from None
    except (EOFError, zipfile.BadZipFile, RuntimeError, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GLNetError(f"{path} is not a readable checkpoint (truncated or corrupt: {first})") from None
    except Exception:  # any other file (text, an image) makes the unpickler fail in its own ways
        raise GLNetError(f"{path} is not a PyTorch checkpoint (a text file or another format?)") from None
    if not isinstance(obj, dict):
        raise GLNetError(f"{path} is not a checkpoint: it holds a {type(obj).__name__}, not a state_dict")
    return obj


def _state_dict(obj: dict, path) -> dict[str, torch.Tensor]:
    """The weights of an authors'-style file, without the DataParallel prefix."""
    for key in ("state_dict", "model"):  # common training-script wrappers
        if key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise GLNetError(f"{path} is not a checkpoint: it holds no weights")
    return {k.removeprefix("module."): v for k, v in tensors.items()}


def _infer_config(sd: dict[str, torch.Tensor], path) -> GLNetConfig:
    try:
        num_classes = sd["fpn_global.classify.weight"].shape[0]
        width = sd["fpn_global.toplayer.weight"].shape[0]
        stem = sd["resnet_global.conv1.weight"].shape[0]
    except KeyError as e:
        raise GLNetError(f"{path} is not a GLNet checkpoint: missing key {e.args[0]}") from None
    bottleneck = "resnet_global.layer1.0.conv3.weight" in sd
    depths = [
        len({m.group(1) for k in sd if (m := re.match(rf"resnet_global\.layer{i}\.(\d+)\.", k))}) for i in range(1, 5)
    ]
    for name in BACKBONES:
        if _RESNET_DEPTHS[name] == depths and (name in ("resnet50", "resnet101")) == bottleneck:
            return GLNetConfig(num_classes, name, width, stem)
    raise GLNetError(f"{path}: backbone with blocks {depths} is not one of {', '.join(BACKBONES)}")


def _load_weights(model: GLNet, sd: dict[str, torch.Tensor], path, optional: tuple[str, ...] = ()) -> GLNet:
    """Put the file's tensors into a model built on the meta device.

    Wrong shapes and missing keys are reported in one line.  The tensors are
    assigned, not copied, so loading never holds two copies of the weights."""
    expected = model.state_dict()
    wrong = [
        f"{k} {tuple(sd[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in sd and sd[k].shape != v.shape
    ]
    if wrong:
        hint = " (wrong class count?)" if any("classify" in w or "ensemble" in w for w in wrong) else ""
        raise GLNetError(f"{path}: {len(wrong)} weights have the wrong shape{hint}: {'; '.join(wrong[:3])}")
    missing = [k for k in expected if k not in sd]
    required = [k for k in missing if not k.endswith("num_batches_tracked") and not k.startswith(optional)]
    if required:
        raise GLNetError(f"{path}: {len(required)} missing keys for this mode, e.g. {', '.join(required[:3])}")
    weights = {k: (sd[k].float() if sd[k].is_floating_point() else sd[k]) for k in expected if k in sd}
    # unused by this mode (e.g. the _ext layers in global2local) or absent from old files
    weights.update({k: torch.zeros(expected[k].shape, dtype=expected[k].dtype) for k in missing})
    model.load_state_dict(weights, assign=True)
    return model


def _build(sd, path, mode: Mode, config: GLNetConfig) -> GLNet:
    with torch.device("meta"):
        model = GLNet(config, global_only=mode == Mode.GLOBAL)
    # global2local never runs the local2global ``_ext`` layers
    optional = ("fpn_global.smooth.", *_ext_names(model)) if mode == Mode.GLOBAL2LOCAL else ()
    return _load_weights(model, sd, path, optional).eval()


def _ext_names(model: GLNet) -> tuple[str, ...]:
    return tuple(f"fpn_global.{n}." for n, _ in model.fpn_global.named_children() if n.endswith("_ext"))


def _build_fixed_global(sd, path, config: GLNetConfig) -> GLNet:
    fixed_config = _infer_config(sd, path)
    if fixed_config.num_classes != config.num_classes:
        raise GLNetError(
            f"wrong class count: global weights {path} have {fixed_config.num_classes} classes, "
            f"the local2global weights {config.num_classes}"
        )
    return _build(sd, path, Mode.GLOBAL, fixed_config)


def load_checkpoint(
    path: str | os.PathLike,
    mode: Mode | str | None = None,
    global_path: str | os.PathLike | None = None,
    classes: ClassTable | None = None,
) -> GLNetCheckpoint:
    """Load our checkpoint, or an authors' file for ``mode``.

    ``global_path`` is the authors' global checkpoint that their
    local2global needs for its fixed global branch."""
    mode = Mode.parse(mode) if mode is not None else None
    obj = _read(path)
    if obj.get("format") == FORMAT:
        ckpt = _from_ours(obj, path)
        if mode is not None and mode != ckpt.mode:
            raise GLNetError(f"{path} is a {ckpt.mode} checkpoint, but mode {mode} was asked for")
        if global_path is not None:
            log.warning("%s bundles its own weights: ignoring the global weights %s", path, global_path)
        return ckpt
    if mode is None:
        raise GLNetError(f"{path} is an authors'-style state_dict: say which mode it is for (--mode)")
    sd = _state_dict(obj, path)
    config = _infer_config(sd, path)
    model = _build(sd, path, mode, config)
    global_model = None
    if mode == Mode.LOCAL2GLOBAL:
        if global_path is None:
            raise GLNetError(
                "the authors' local2global needs their global checkpoint too (fpn_deepglobe_global.pth; --global-weights on the command line)"
            )
        global_model = _build_fixed_global(_state_dict(_read(global_path), global_path), global_path, config)
    table = classes or (DEEPGLOBE if config.num_classes == len(DEEPGLOBE) else ClassTable.default(config.num_classes))
    _check_classes(table, config, path)
    return GLNetCheckpoint(mode, model, table, global_model, source=str(path))


def _check_classes(table: ClassTable, config: GLNetConfig, path) -> None:
    if len(table) != config.num_classes:
        raise GLNetError(
            f"wrong class count: {path} predicts {config.num_classes} classes, the class table has {len(table)}"
        )


def _from_ours(obj: dict, path) -> GLNetCheckpoint:
    version = obj.get("format_version")
    if version != FORMAT_VERSION:
        raise GLNetError(
            f"{path}: napari-glnet checkpoint format {version} is not supported (this is {FORMAT_VERSION})"
        )
    try:
        mode = obj["mode"]
        sd = obj["state_dict"]
        table = ClassTable.from_list(obj["classes"])
        config = GLNetConfig(len(table), obj["backbone"], int(obj["fpn_width"]), int(obj.get("backbone_width", 64)))
        inp = obj.get("input", {})
    except KeyError as e:
        raise GLNetError(f"{path}: napari-glnet checkpoint lacks {e.args[0]!r}") from None
    if mode not in Mode.choices():
        raise GLNetError(f"{path}: unknown mode {mode!r} in the checkpoint")
    mode = Mode(mode)
    inferred = _infer_config(sd, path)
    if inferred.num_classes != config.num_classes:
        raise GLNetError(
            f"wrong class count: {path} names {config.num_classes} classes but its weights predict {inferred.num_classes}"
        )
    model = _build(sd, path, mode, inferred)
    global_model = None
    if mode == Mode.LOCAL2GLOBAL:
        gsd = obj.get("global_state_dict")
        if gsd is None:
            raise GLNetError(f"{path}: a local2global checkpoint must bundle its fixed global weights")
        global_model = _build_fixed_global(gsd, path, inferred)
    return GLNetCheckpoint(
        mode,
        model,
        table,
        global_model,
        size_g=int(obj.get("size_g", 508)),
        size_p=int(obj.get("size_p", 508)),
        scene_size=int(obj.get("scene_size", 2448)),
        input_mean=tuple(inp.get("mean", (0.0, 0.0, 0.0))),
        input_std=tuple(inp.get("std", (1.0, 1.0, 1.0))),
        source=str(path),
        extra=dict(obj.get("extra", {})),
    )


def save_checkpoint(ckpt: GLNetCheckpoint, path: str | os.PathLike, half: bool = False) -> None:
    """Write our self-describing format atomically (a crash never leaves half a file).

    ``half`` stores floating weights as fp16 (for shipping small models);
    they are loaded back as fp32."""

    if ckpt.model.inference_only:
        raise GLNetError(
            "this checkpoint's model was converted for inference by a Segmenter; save a freshly loaded one"
        )

    def weights(model: GLNet) -> dict[str, torch.Tensor]:
        sd = model.state_dict()
        return {k: (v.half() if half and v.is_floating_point() else v).cpu() for k, v in sd.items()}

    obj = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mode": ckpt.mode.value,
        "classes": ckpt.classes.to_list(),
        "backbone": ckpt.config.backbone,
        "fpn_width": ckpt.config.fpn_width,
        "backbone_width": ckpt.config.backbone_width,
        "size_g": ckpt.size_g,
        "size_p": ckpt.size_p,
        "scene_size": ckpt.scene_size,
        "input": {"scale": "0-1", "mean": list(ckpt.input_mean), "std": list(ckpt.input_std)},
        "state_dict": weights(ckpt.model),
        "global_state_dict": weights(ckpt.global_model) if ckpt.global_model is not None else None,
        "extra": ckpt.extra,
    }
    with atomic_write(path) as f:
        torch.save(obj, f)
