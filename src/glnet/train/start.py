"""A training stage's starting model: from scratch, from the previous stage,
or (fine-tuning) from a checkpoint of any mode, on the data's class table.

Which weights a stage starts from, per source checkpoint mode:

============  ==============================  ======================================  ===================================
stage         global source                   global2local source                     local2global source
============  ==============================  ======================================  ===================================
global        continue it                     its (frozen, unchanged) global branch   its fixed global model
global2local  its global branch, new local    continue it                             its local branch and ensemble, with
              branch (the recipe)                                                     the fixed global model as global branch
local2global  refused (no local branch)       the recipe: fresh ``_ext`` layers       continue it
============  ==============================  ======================================  ===================================

Only the first column of global/global2local and the global2local source of
local2global are the authors' recipe (plain ``glnet train``); the others
need ``finetune=True``.  A class table whose names differ from the source's
re-initialises only the classifier layers (``glnet.model.CLASSIFIERS``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from glnet.checkpoint import GLNetCheckpoint, load_checkpoint
from glnet.classes import DEEPGLOBE, ClassTable
from glnet.constants import Mode
from glnet.data.dataset import export_classes
from glnet.errors import GLNetError
from glnet.model import GLNet, GLNetConfig
from glnet.train.config import TrainConfig
from glnet.train.steps import freeze

log = logging.getLogger(__name__)

# the source modes each stage accepts in the authors' recipe (without finetune)
RECIPE_SOURCES = {
    Mode.GLOBAL: (Mode.GLOBAL,),
    Mode.GLOBAL2LOCAL: (Mode.GLOBAL,),
    Mode.LOCAL2GLOBAL: (Mode.GLOBAL2LOCAL,),
}
GLOBAL_PARTS = ("resnet_global", "fpn_global")


def data_classes(config: TrainConfig) -> ClassTable | None:
    """The class table the data is labelled with: ``config.classes`` when
    given, else the one an export's manifest records, else None (unknown)."""
    return config.classes if config.classes is not None else export_classes(config.data)


def load_source(config: TrainConfig) -> GLNetCheckpoint:
    """``config.init_from``, checked against what the stage can start from."""
    path = config.init_from
    if path is None:
        raise GLNetError(f"{config.mode} training starts from a checkpoint: pass --from")
    authors_l2g = config.init_mode == Mode.LOCAL2GLOBAL
    src = load_checkpoint(path, mode=config.init_mode, global_path=config.global_from if authors_l2g else None)
    allowed = tuple(Mode) if config.finetune else RECIPE_SOURCES[config.mode]
    if config.mode == Mode.LOCAL2GLOBAL:
        allowed = tuple(m for m in allowed if m != Mode.GLOBAL)
    if src.mode not in allowed:
        need = " or ".join(allowed)
        raise GLNetError(f"{path} is a {src.mode} checkpoint; {config.mode} training starts from a {need} one")
    for name in ("backbone", "fpn_width", "backbone_width"):
        asked = getattr(config, name)
        if asked is not None and asked != getattr(src.config, name):
            raise GLNetError(f"--{name.replace('_', '-')} {asked} differs from {path}'s {getattr(src.config, name)}")
    return src


def _copy_parts(dst: GLNet, src: GLNet, names: tuple[str, ...], where: Path) -> None:
    """Copy submodules' weights; only the local2global-only layers may be
    absent from the source (e.g. a global-only model)."""
    for name in names:
        missing, _ = getattr(dst, name).load_state_dict(getattr(src, name).state_dict(), strict=False)
        if any("_ext" not in k and not k.startswith("smooth.") for k in missing):
            raise GLNetError(f"{where}: {name} incomplete ({missing[:3]})")


def _global_branch(src: GLNetCheckpoint) -> GLNet:
    """The plain global branch of any checkpoint, as a global-only model."""
    if src.mode == Mode.GLOBAL:
        return src.model
    donor = src.global_model if src.mode == Mode.LOCAL2GLOBAL and src.global_model is not None else src.model
    model = GLNet(donor.config, global_only=True)
    _copy_parts(model, donor, GLOBAL_PARTS, Path(src.source))
    return model


def _fixed_global(config: TrainConfig, src: GLNetCheckpoint) -> GLNet:
    """local2global's fixed first-pass global model: ``--global-from``, else
    the source's own (a global2local checkpoint's frozen global branch is
    the global checkpoint it was trained from)."""
    if config.global_from is not None and config.init_mode != Mode.LOCAL2GLOBAL:
        return load_checkpoint(config.global_from, mode=Mode.GLOBAL).model
    if src.global_model is not None:
        return src.global_model
    log.info("local2global: the fixed global pass uses %s's global branch", config.init_from)
    return _global_branch(src)


def _fixed_of(src: GLNetCheckpoint) -> GLNet:
    """A local2global checkpoint's fixed global model (every such checkpoint has one)."""
    if src.global_model is None:
        raise GLNetError(f"{src.source}: a local2global checkpoint without its fixed global model")
    return src.global_model


def _stage_models(config: TrainConfig, src: GLNetCheckpoint) -> tuple[GLNet, GLNet | None]:
    """(model, fixed global model or None) for ``config.mode`` from ``src``."""
    where = Path(src.source)  # the --from file
    if config.mode == Mode.GLOBAL:
        return _global_branch(src), None
    if config.mode == Mode.GLOBAL2LOCAL:
        if src.mode == Mode.GLOBAL2LOCAL:
            return src.model, None
        if src.mode == Mode.GLOBAL:
            model = GLNet(src.config)  # a new local branch, the authors' init
            _copy_parts(model, src.model, GLOBAL_PARTS, where)
            return model, None
        model = src.model  # local2global: back to its fixed global model as the (frozen) global branch
        _copy_parts(model, _fixed_of(src), GLOBAL_PARTS, where)
        return model, None
    fixed = _fixed_global(config, src)
    if src.mode == Mode.GLOBAL2LOCAL:
        model = src.model
        model.fpn_global.init_ext(torch.Generator().manual_seed(config.seed))  # the authors: random _ext layers
    else:
        model = src.model
    return model, freeze(fixed)


def _change_classes(config: TrainConfig, model: GLNet, fixed: GLNet | None, old: ClassTable, new: ClassTable) -> None:
    """Fresh classifier layers when the data's class names differ from the
    source's; a table differing only in colours keeps the weights."""
    if new.names == old.names:
        return
    log.info("classes %s -> %s: re-initialising the classifier layers", old.names, new.names)
    model.reset_classifier(len(new))
    if config.mode == Mode.GLOBAL2LOCAL:
        log.warning(
            "global2local keeps the global branch frozen, so its new classifier stays untrained: the global "
            "overview and coarse-to-fine proposals of this model mean nothing. Train the global stage on the "
            "new classes first and start global2local from it."
        )
    if fixed is not None and fixed.config.num_classes != len(new):
        raise GLNetError(
            f"the fixed global model predicts {fixed.config.num_classes} classes, the data has {len(new)}: "
            "pass --global-from a global checkpoint trained on the new classes"
        )


def initial_checkpoint(config: TrainConfig) -> GLNetCheckpoint:
    """The stage's starting checkpoint (see the module docstring), seeded so
    runs repeat, on the data's class table."""
    torch.manual_seed(config.seed)
    classes = data_classes(config)
    if config.init_from is None:  # the global stage from scratch (ImageNet init is not available)
        classes = classes or DEEPGLOBE
        cfg = GLNetConfig(
            len(classes), config.backbone or "resnet50", config.fpn_width or 256, config.backbone_width or 64
        )
        model = GLNet(cfg, global_only=True)
        return GLNetCheckpoint(Mode.GLOBAL, model, classes, size_g=config.size_g, size_p=config.size_p)
    src = load_source(config)
    model, fixed = _stage_models(config, src)
    classes = classes or src.classes
    _change_classes(config, model, fixed, src.classes, classes)
    return GLNetCheckpoint(config.mode, model, classes, fixed, size_g=config.size_g, size_p=config.size_p)


__all__ = ["data_classes", "initial_checkpoint", "load_source"]
