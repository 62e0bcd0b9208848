"""The inference engine: GLNet on one image, whole or region by region.

The numbers are the reference evaluation's: the global view is the whole
image resized to size_g x size_g with PIL's bilinear filter, pixels scaled
to [0, 1], the reference patch grid, each patch's 1/4-scale logits
nearest-upsampled to the patch and averaged where patches overlap.

What is different is how the work is organised:

* the global branch runs once per image and its output is an explicit
  value reused by every patch batch and every later region request;
* patches go through the local branch in batches, channels-last;
* a region request runs only the patches that intersect it, and inside the
  region the result equals the whole-image result;
* local2global keeps C x 127 x 127 per patch (the local half of the
  ensemble), never the 512-channel ps3, so memory stays bounded;
* ``ImageSession.run`` yields after every batch, so a caller can show
  progress and stop between batches; work done so far is kept and reused.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image

from glnet.checkpoint import GLNetCheckpoint
from glnet.constants import Precision
from glnet.errors import GLNetError
from glnet.geometry import Region, clip
from glnet.inference.coarse import CoarseToFine, as_coarse_to_fine, skipped_logits
from glnet.inference.coarse import nearest_index as _nearest_index
from glnet.inference.grid import PatchGrid, logit_size, padded_to_patch
from glnet.inference.results import PatchResults, Progress, Segmentation, label_dtype
from glnet.model import EnsembleHead, GLNet, GlobalContext
from glnet.model.fusion import LocalMerger, crop, crop_features
from glnet.model.resnet import fold_batchnorm
from glnet.runtime import (
    autocast,
    release_between_batches,
    resolve_device,
    resolve_precision,
    return_freed_memory_promptly,
    reuse_freed_memory,
    tensor_bytes,
    warn_slow_precision,
)

log = logging.getLogger(__name__)


class Segmenter:
    """A loaded checkpoint placed on a device, ready to segment images.

    It takes the checkpoint's models over and converts them for inference
    (BatchNorm folded into the convs, channels-last): train or save a
    freshly loaded checkpoint, not one a Segmenter has used."""

    def __init__(
        self,
        checkpoint: GLNetCheckpoint,
        *,
        device: str = "auto",
        precision: Precision | str = Precision.FP32,
        batch_size: int = 4,
        size_g: int | None = None,
        size_p: int | None = None,
        coarse_to_fine: CoarseToFine | bool | None = None,
    ):
        """``precision``: fp32 (the default: the reference evaluation's
        labels), bf16, fp16, or auto (bf16 where the device computes it
        natively, else fp32; ``self.precision`` says which).
        ``coarse_to_fine`` (True or a ``CoarseToFine``): patches far from
        the global prediction's foreground skip the local branch (see
        ``glnet.inference.coarse``); it changes nothing in mode global."""
        if batch_size < 1:
            raise GLNetError(f"batch size must be at least 1, got {batch_size}")
        self.checkpoint = checkpoint
        self.mode = checkpoint.mode
        self.device = resolve_device(device)
        self.precision = resolve_precision(self.device, precision)  # "auto" becomes fp32 or bf16
        warn_slow_precision(self.device, self.precision)
        self.batch_size = batch_size
        self.size_g = size_g or checkpoint.size_g
        self.size_p = size_p or checkpoint.size_p
        for name, value in (("size_g", self.size_g), ("size_p", self.size_p)):
            if value < 32:
                raise GLNetError(f"{name} must be at least 32 px, got {value}")
        self.num_classes = checkpoint.config.num_classes
        self.coarse_to_fine = as_coarse_to_fine(coarse_to_fine) if self.mode != "global" else None
        return_freed_memory_promptly()
        self.model = self._place(checkpoint.model)
        self.global_model = self._place(checkpoint.global_model) if checkpoint.global_model is not None else None
        self.head = EnsembleHead(self.model) if self.mode != "global" else None
        mean = torch.tensor(checkpoint.input_mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(checkpoint.input_std, dtype=torch.float32).view(1, 3, 1, 1)
        self._mean, self._std = mean.to(self.device), std.to(self.device)

    def replace(self, *, batch_size: int | None = None, device: str | None = None) -> Segmenter:
        """The same model with another batch size or on another device (what
        running out of memory asks for).  It shares this Segmenter's models,
        moved to the new device: use only the new one from then on."""
        return Segmenter(
            self.checkpoint,
            device=device or str(self.device),
            precision=self.precision,
            batch_size=batch_size or self.batch_size,
            size_g=self.size_g,
            size_p=self.size_p,
            coarse_to_fine=self.coarse_to_fine,
        )

    @property
    def global_net(self) -> GLNet:
        """The model whose global branch gives an image its context: local2global's fixed one, else the model."""
        return self.global_model if self.global_model is not None and self.mode == "local2global" else self.model

    @property
    def ensemble(self) -> EnsembleHead:
        """The fused ensemble head (modes global2local and local2global)."""
        if self.head is None:
            raise GLNetError("mode global has no local branch")
        return self.head

    def _place(self, model: GLNet) -> GLNet:
        for name in ("resnet_global", "resnet_local"):
            if hasattr(model, name):
                fold_batchnorm(getattr(model, name))
        model.inference_only = True
        # torch's stubs omit Module.to's memory_format keyword, which it accepts
        return model.eval().to(self.device, memory_format=torch.channels_last)  # type: ignore[call-overload]

    def to_tensor(self, pixels: np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W, 3) -> scaled float (B, 3, H, W), channels-last."""
        x = torch.from_numpy(np.array(pixels, copy=True)).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        x = (x - self._mean) / self._std
        return x.contiguous(memory_format=torch.channels_last)

    def open(self, image: np.ndarray) -> ImageSession:
        return ImageSession(self, image)

    def segment(self, image: np.ndarray, region: Region | None = None) -> Segmentation:
        session = self.open(image)
        for _ in session.run(region):
            pass
        return session.result(region)


class ImageSession:
    """One image being segmented: its global context and the patches done so far."""

    def __init__(self, segmenter: Segmenter, image: np.ndarray):
        self.seg = segmenter
        self.height, self.width = image.shape[:2]
        p = segmenter.size_p
        self.image = image = padded_to_patch(image, p)
        self.padded_size = image.shape[:2]
        self.grid = PatchGrid(image.shape[0], image.shape[1], p)
        self.origins = self.grid.origins
        self._context: GlobalContext | None = None
        self._refined = False  # local2global: the second global pass is done and in every patch's logits
        self._merger: LocalMerger | None = None
        # ensemble logits per patch (local2global: the local half until refined), allocated before any
        # batch: long-lived buffers allocated between two batches' activations would pin holes in the heap
        q = logit_size(p) if segmenter.mode != "global" else 0
        self._logits = torch.zeros(len(self.origins) if q else 0, segmenter.num_classes, q, q)
        self._computed = np.zeros(len(self.origins), bool)
        self._global_logits: torch.Tensor | None = None
        self._fine: list[int] | None = None  # coarse-to-fine: the patches the local branch runs
        self._fine_set: set[int] | None = None

    @property
    def nbytes(self) -> int:
        """Memory held (the scene, its patch logits, its global context): what keeping several sessions costs."""
        return self.image.nbytes + tensor_bytes([self._logits, *(self._context.maps() if self._context else [])])

    # -- pieces --------------------------------------------------------
    def global_image(self) -> torch.Tensor:
        s = self.seg.size_g
        small = np.asarray(Image.fromarray(self.image).resize((s, s), Image.Resampling.BILINEAR))
        return self.seg.to_tensor(small[None])

    def _ctx(self) -> GlobalContext:
        if self._context is None:
            seg = self.seg
            with torch.inference_mode(), autocast(seg.device, seg.precision):
                self._image_g = self.global_image()
                self._context = seg.global_net.global_context(self._image_g)
        return self._context

    def global_logits(self) -> torch.Tensor:
        """(C, h, w) global-branch logits: the fast overview of the whole image."""
        if self._global_logits is None:
            seg, ctx = self.seg, self._ctx()
            with torch.inference_mode(), autocast(seg.device, seg.precision):
                self._global_logits = seg.global_net.global_logits(ctx)[0].float().cpu()
        return self._global_logits

    def global_labels(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Global-branch labels at image pixels ``rows`` x ``cols`` (any sampling).

        The quick overview a viewer shows before the patches are done: one
        global pass, sampled as coarsely as the screen needs.  In mode global
        this is the final result at those pixels."""
        g = self.global_logits()
        r = _nearest_index(g.shape[1], self.padded_size[0])[np.asarray(rows)]
        c = _nearest_index(g.shape[2], self.padded_size[1])[np.asarray(cols)]
        return g.argmax(0).numpy().astype(label_dtype(self.num_classes))[np.ix_(r, c)]

    def _patches(self, indices: list[int]) -> torch.Tensor:
        p = self.seg.size_p
        pixels = np.stack([self.image[t : t + p, l : l + p] for t, l in (self.origins[i] for i in indices)])
        return self.seg.to_tensor(pixels)

    def _local_batch(self, indices: list[int], ctx: GlobalContext) -> None:
        """Local branch + local half of the ensemble for a batch of patches."""
        seg = self.seg
        origins = [self.origins[i] for i in indices]
        crops = crop_features(ctx.features, self.padded_size, origins, seg.size_p)
        # each stage is merged (local2global) and released before the next is computed; ps2 is kept
        stages = seg.model.local_stages(self._patches(indices), crops)
        for stage in range(4):
            maps = next(stages)
            if self._merger is not None:  # local2global
                self._merger.add_stage(stage, maps, origins)
            if stage < 3:
                del maps
        part = seg.ensemble.local_part(seg.model.fpn_local.ps3_parts(maps, crops.ps2))
        if seg.mode == "global2local":
            part = part + self._global_part(ctx, origins)
        self._logits[indices] = part.float().cpu()
        self._computed[indices] = True

    def _global_part(self, ctx: GlobalContext, origins: list[tuple[int, int]]) -> torch.Tensor:
        """The global half of the ensemble logits of a batch of patches."""
        ps3_crop = crop(ctx.ps3, self.padded_size, origins, self.seg.size_p)
        return self.seg.ensemble.global_part(ps3_crop, tuple(self._logits.shape[-2:]))

    def _refine(self, fine: list[int]) -> None:
        """local2global's second global pass on the merged local maps, and its
        half of every patch's ensemble logits.  The fixed global pass's maps
        are released first (only the overview logits are kept)."""
        seg = self.seg
        if self._merger is None:  # run() makes it before the first batch
            raise RuntimeError("local2global: the local maps were not merged")
        self.global_logits()
        self._context = None
        with torch.inference_mode(), autocast(seg.device, seg.precision):
            refined = seg.model.refine_global(self._image_g, self._merger.result())
            self._merger = None
            for start in range(0, len(fine), seg.batch_size):
                batch = fine[start : start + seg.batch_size]
                part = self._global_part(refined, [self.origins[i] for i in batch])
                for i, g in zip(batch, part.float().cpu()):
                    self._logits[i] += g
        self._refined = True

    # -- coarse-to-fine ------------------------------------------------
    def fine_patches(self) -> list[int]:
        """Indices of the patches the local branch runs: all of them, or with
        coarse-to-fine those near the global prediction's foreground (this
        computes the global logits)."""
        if self._fine is None:
            ctf = self.seg.coarse_to_fine
            if ctf is None or self.seg.mode == "global":
                self._fine = list(range(len(self.origins)))
            else:
                fg = ctf.foreground(self.global_logits().argmax(0).numpy())
                near = ctf.near(fg, self.padded_size, self.origins, self.seg.size_p)
                self._fine = [i for i, keep in enumerate(near) if keep]
                log.info(
                    "coarse-to-fine: %d of %d patches skipped", len(self.origins) - len(self._fine), len(self.origins)
                )
        return self._fine

    @property
    def patches_skipped(self) -> int:
        """How many of the image's patches coarse-to-fine leaves to the global prediction."""
        return len(self.origins) - len(self.fine_patches()) if self.seg.mode != "global" else 0

    def _is_skipped(self, i: int) -> bool:
        if self.seg.coarse_to_fine is None:
            return False
        if self._fine_set is None:
            self._fine_set = set(self.fine_patches())
        return i not in self._fine_set

    # -- the work loop -------------------------------------------------
    def patches_for(self, region: Region | None) -> list[int]:
        top, left, bottom, right = self._clip(region)
        return self.grid.intersecting(top, left, bottom, right)

    def run(self, region: Region | None = None) -> Iterator[Progress]:
        """Compute what ``result(region)`` needs, yielding after every batch.

        Stopping early (not exhausting the generator) is safe: finished
        batches are kept, and a later call resumes where this one stopped.
        While it runs, freed activations are reused (``reuse_freed_memory``)."""
        with reuse_freed_memory():
            yield from self._run(region)

    def _run(self, region: Region | None) -> Iterator[Progress]:
        seg = self.seg
        if seg.mode == "global":
            self.global_logits()
            yield Progress("global", 1, 1)
            return
        if self._refined:  # local2global computes every patch at once: nothing is left to do
            yield Progress("global", 0, 0)
            return
        # local2global's global pass needs every (fine) patch's maps once per image
        fine = set(self.fine_patches())
        todo = list(range(len(self.origins))) if seg.mode == "local2global" else self.patches_for(region)
        todo = [i for i in todo if not self._computed[i] and i in fine]
        total = len(todo)
        ctx = self._ctx()
        if seg.mode == "local2global" and self._merger is None:  # before the first batch, as self._logits
            self._merger = LocalMerger(
                ctx.features, self.padded_size, [self.origins[i] for i in self.fine_patches()], seg.size_p
            )
        yield Progress("global", 0, total)
        for start in range(0, total, seg.batch_size):
            batch = todo[start : start + seg.batch_size]
            release_between_batches()
            with torch.inference_mode(), autocast(seg.device, seg.precision):
                self._local_batch(batch, ctx)
            yield Progress("local", start + len(batch), total)
        if seg.mode == "local2global" and fine:
            release_between_batches(always=True)  # the global pass allocates at other sizes than the batches
            self._refine(self.fine_patches())
            yield Progress("refine", total, total)

    def _patch_logits(self, i: int) -> torch.Tensor:
        if self._is_skipped(i):
            return skipped_logits(self.global_logits(), self.padded_size, self.origins[i], self.seg.size_p)
        return self._logits[i]

    # -- results -------------------------------------------------------
    def _clip(self, region: Region | None) -> Region:
        return clip(region, (self.height, self.width))

    def result(self, region: Region | None = None) -> Segmentation:
        """Mean logits and labels inside ``region`` (run() must have finished)."""
        box = self._clip(region)
        if self.seg.mode == "global":
            top, left, bottom, right = box
            labels = self.global_labels(np.arange(top, bottom), np.arange(left, right))
            return Segmentation(box, self.global_logits().numpy(), labels)
        needed = self.patches_for(region)
        if not self._done(needed):
            raise GLNetError("the region has not been computed yet: iterate run(region) to the end first")
        return self._patch_results(needed).result(box)

    @property
    def complete(self) -> bool:
        """Every patch (and local2global's refined global pass) is done."""
        if self.seg.mode == "global":
            return self._global_logits is not None
        return self._done(range(len(self.origins)))

    def _done(self, indices) -> bool:
        """The patches ``indices`` (and local2global's refined pass) are computed."""
        if self.seg.coarse_to_fine is not None and self._fine is None:
            return False
        fine = set(self.fine_patches())
        if any(i in fine and not self._computed[i] for i in indices):
            return False
        return self.seg.mode != "local2global" or self._refined or not fine

    def region_results(self, region: Region) -> PatchResults:
        """The patches ``region`` needs, as a compact value (run(region) must have finished)."""
        if self.seg.mode == "global":
            return self.finished()
        return self._patch_results(self.patches_for(region))

    def _patch_results(self, indices: list[int]) -> PatchResults:
        p = self.seg.size_p
        logits = torch.stack([self._patch_logits(i) for i in indices]).numpy()
        skipped = np.array([self._is_skipped(i) for i in indices], bool) if self.seg.coarse_to_fine else None
        return PatchResults((self.height, self.width), [self.origins[i] for i in indices], (p, p), logits, skipped)

    def finished(self) -> PatchResults:
        """The whole image's results as a compact value (C x size_p/4 squared per patch): what a caller
        keeps, ships or stores after run() ends, instead of the session with its model, image and global maps."""
        if self.seg.mode == "global":
            g = self.global_logits().numpy()[None]
            return PatchResults((self.height, self.width), [(0, 0)], self.padded_size, g)
        if not self.complete:
            raise GLNetError("the image has not been computed yet: iterate run() to the end first")
        return self._patch_results(list(range(len(self.origins))))

    @property
    def num_classes(self) -> int:
        return self.seg.num_classes
