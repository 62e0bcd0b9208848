"""One optimisation step's forward and backward passes, per training mode.

Each function runs the forward and backward passes of one batch of images
and leaves the gradients accumulated in the parameters; the caller owns the
optimiser step.  Patches go through in sub-batches with a backward pass each
(gradient accumulation), so memory is bounded by the sub-batch, not by the
number of patches in an image.  Sub-batch losses are summed, not averaged,
as in the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

import torch
from torch import Tensor, nn

from glnet.constants import Mode, Precision
from glnet.inference.coarse import CoarseToFine
from glnet.model import GLNet
from glnet.model.fpn import Features
from glnet.model.fusion import LocalMerger, crop, crop_features
from glnet.runtime import autocast
from glnet.train.batches import PreparedImage
from glnet.train.losses import FM_REG_WEIGHT, fm_regularisation, focal_loss

GLOBAL_PARTS = ("resnet_global", "fpn_global")
LOCAL_PARTS = ("resnet_local", "fpn_local")
Backward = Callable[[Tensor, bool], None]  # (loss, retain_graph)
M = TypeVar("M", bound=nn.Module)


def trained_parts(mode: Mode) -> tuple[str, ...]:
    """The submodules a stage trains; the other branch is frozen."""
    if mode == Mode.GLOBAL:
        return GLOBAL_PARTS
    if mode == Mode.GLOBAL2LOCAL:
        return (*LOCAL_PARTS, "ensemble_conv")
    return (*GLOBAL_PARTS, "ensemble_conv")


def set_train_mode(model: GLNet, mode: Mode) -> None:
    """Trained parts in train mode with gradients; everything else frozen in
    eval mode (its BatchNorm statistics stay fixed, as the reference's)."""
    parts = trained_parts(mode)
    model.eval()
    for name, module in model.named_children():
        trained = name in parts
        module.train(trained)
        module.requires_grad_(trained)


def _default_backward(loss: Tensor, retain_graph: bool) -> None:
    loss.backward(retain_graph=retain_graph)


def fine_patches(im: PreparedImage, global_logits: Tensor, ctf: CoarseToFine | None) -> PreparedImage:
    """Coarse-to-fine training: ``im`` with only the patches inference would
    run (near the global prediction's foreground) or that come near true
    foreground (which a weak global branch may miss)."""
    if ctf is None:
        return im
    proposed = ctf.near(ctf.foreground(global_logits[0].argmax(0).cpu().numpy()), im.size, im.origins, im.size_p)
    true = ctf.near(ctf.foreground(im.labels), im.size, im.origins, im.size_p)
    return replace(im, origins=[o for o, a, b in zip(im.origins, proposed, true) if a or b])


def _mean(losses: list[float]) -> float:
    return sum(losses) / len(losses) if losses else 0.0  # coarse-to-fine may leave no patch


def global_step(
    model: GLNet,
    images: list[PreparedImage],
    precision: Precision = Precision.FP32,
    backward: Backward = _default_backward,
) -> float:
    """Stage 1: focal loss of the global logits over the whole batch at once."""
    image_g = torch.cat([im.image_g for im in images])
    with autocast(image_g.device, precision):
        logits = model.global_logits(model.global_context(image_g))
    loss = focal_loss(logits, torch.cat([im.labels_g for im in images]))
    backward(loss, False)
    return float(loss.detach())


def global2local_step(
    model: GLNet,
    images: list[PreparedImage],
    sub_batch_size: int,
    precision: Precision = Precision.FP32,
    backward: Backward = _default_backward,
    coarse_to_fine: CoarseToFine | None = None,
) -> float:
    """Stage 2: per patch sub-batch, focal(local) + focal(ensemble) + 0.15 * MSE(local ps3, global ps3 crop).

    The frozen global branch runs once per image without gradients."""
    losses = []
    for im in images:
        device = im.image_g.device
        with torch.no_grad(), autocast(device, precision):
            ctx = model.global_context(im.image_g)
            if coarse_to_fine is not None:
                im = fine_patches(im, model.global_logits(ctx), coarse_to_fine)
        for start in range(0, len(im.origins), sub_batch_size):
            origins = im.origins[start : start + sub_batch_size]
            patches, labels = im.patches(start, start + len(origins), device)
            with autocast(device, precision):
                crops = crop_features(ctx.features, im.size, origins, im.size_p)
                _, ps3, local_logits = model.local_train(patches, crops)
                ps3_crop = crop(ctx.ps3, im.size, origins, im.size_p)
                ens_logits = model.ensemble(ps3, ps3_crop)
            loss = focal_loss(local_logits, labels) + focal_loss(ens_logits, labels)
            loss = loss + FM_REG_WEIGHT * fm_regularisation(ps3, ps3_crop)
            backward(loss, False)
            losses.append(float(loss.detach()))
    return _mean(losses)


def _collect_local(
    model: GLNet,
    global_model: GLNet,
    im: PreparedImage,
    sub_batch_size: int,
    precision: Precision,
    coarse_to_fine: CoarseToFine | None = None,
) -> tuple[Features, list[Tensor], PreparedImage]:
    """Local2global's first pass, without gradients: the fixed global model's
    features, the frozen local branch on every patch (coarse-to-fine: every
    patch kept), its maps merged to global size, each sub-batch's local ps3
    (kept for the ensemble) and the image with the patches used."""
    device = im.image_g.device
    ps3s = []
    with torch.no_grad(), autocast(device, precision):
        ctx = global_model.global_context(im.image_g)
        if coarse_to_fine is not None:
            im = fine_patches(im, global_model.global_logits(ctx), coarse_to_fine)
        merger = LocalMerger(ctx.features, im.size, im.origins, im.size_p)
        for start in range(0, len(im.origins), sub_batch_size):
            origins = im.origins[start : start + sub_batch_size]
            patches, _ = im.patches(start, start + len(origins), device)
            crops = crop_features(ctx.features, im.size, origins, im.size_p)
            local, ps3, _ = model.local_train(patches, crops)
            merger.add(local, origins)
            ps3s.append(ps3)
    return merger.result(), ps3s, im


def local2global_step(
    model: GLNet,
    global_model: GLNet,
    images: list[PreparedImage],
    sub_batch_size: int,
    precision: Precision = Precision.FP32,
    backward: Backward = _default_backward,
    coarse_to_fine: CoarseToFine | None = None,
) -> float:
    """Stage 3: focal loss of the refined global logits (whole batch), then
    per patch sub-batch focal(ensemble of the stored local ps3 with the crop
    of the refined global ps3).  No MSE term."""
    collected = [_collect_local(model, global_model, im, sub_batch_size, precision, coarse_to_fine) for im in images]
    merged, ps3s, images = [c[0] for c in collected], [c[1] for c in collected], [c[2] for c in collected]
    device = images[0].image_g.device
    image_g = torch.cat([im.image_g for im in images])
    batch = Features.from_maps([torch.cat(maps) for maps in zip(*(m.maps() for m in merged))])
    with autocast(device, precision):
        refined = model.refine_global(image_g, batch)
        logits = model.global_logits(refined)
    loss = focal_loss(logits, torch.cat([im.labels_g for im in images]))
    n_sub = sum(len(ps3) for ps3 in ps3s)
    backward(loss, n_sub > 0)  # the ensembles backpropagate through the refined pass again
    losses = [float(loss.detach())]
    for i, im in enumerate(images):
        for k, start in enumerate(range(0, len(im.origins), sub_batch_size)):
            origins = im.origins[start : start + sub_batch_size]
            _, labels = im.patches(start, start + len(origins), device)
            with autocast(device, precision):
                ps3_crop = crop(refined.ps3[i : i + 1], im.size, origins, im.size_p)
                ens_logits = model.ensemble(ps3s[i][k], ps3_crop)
            loss = focal_loss(ens_logits, labels)
            backward(loss, len(losses) < n_sub)  # the last one frees the graph
            losses.append(float(loss.detach()))
    return sum(losses) / len(losses)


def train_step(
    mode: Mode,
    model: GLNet,
    images: list[PreparedImage],
    sub_batch_size: int = 6,
    global_model: GLNet | None = None,
    precision: Precision = Precision.FP32,
    backward: Backward = _default_backward,
    coarse_to_fine: CoarseToFine | None = None,
) -> float:
    """Forward and backward passes of one batch for ``mode``; returns the mean loss.

    ``coarse_to_fine`` (global2local, local2global): the local branch trains
    only on the patches near foreground (see ``fine_patches``)."""
    if mode == Mode.GLOBAL:
        return global_step(model, images, precision, backward)
    if mode == Mode.GLOBAL2LOCAL:
        return global2local_step(model, images, sub_batch_size, precision, backward, coarse_to_fine)
    if global_model is None:
        raise ValueError("local2global needs the fixed global model")
    return local2global_step(model, global_model, images, sub_batch_size, precision, backward, coarse_to_fine)


def freeze(model: M) -> M:
    """Eval mode and no gradients: for the fixed global model of local2global."""
    return model.eval().requires_grad_(False)


__all__ = [
    "fine_patches",
    "freeze",
    "global2local_step",
    "global_step",
    "local2global_step",
    "set_train_mode",
    "train_step",
    "trained_parts",
]
