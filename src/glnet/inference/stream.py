"""Streaming segmentation of huge images into an OME-Zarr label store.

The image is read scene by scene; each finished scene's compact result
(``PatchResults``: C x size_p/4 squared logits per patch, about 16 MB for a
DeepGlobe scene) is saved in the output store, and every output block whose
covering scenes are all finished is blended and written.  Peak memory is
one scene's work plus a few saved scenes, whatever the image size.

Resume: saved scenes and written blocks are recorded in the store, so a
killed run continues where it stopped; blocks are pure functions of saved
scenes, so the output is byte-identical to an uninterrupted run.  With
dask.distributed, workers compute scenes (each loads the model once) and
this process writes the blocks: the output does not depend on the number
of workers or the order scenes finish in.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import OrderedDict
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from glnet.atomic import atomic_write
from glnet.errors import GLNetError
from glnet.geometry import Region, overlap, shift
from glnet.inference.engine import Segmenter
from glnet.inference.results import PatchResults, Segmentation
from glnet.inference.scenes import SceneGrid, SceneSession, blend
from glnet.inference.spec import ModelSpec
from glnet.store.confidence import ConfidenceMap, confidence_from_logits
from glnet.store.labelstore import LabelStore

log = logging.getLogger(__name__)

BLOCK_CHUNKS = 2  # an output block is 2 x 2 store chunks
PROBABILITY_STEP = 8  # the class-probability map is 1/8 of level 0 per side


_SEGMENTERS: dict[ModelSpec, Segmenter] = {}
# the model settings a resumed run must share (device, batch size and threads may change)
_RECORDED = ("weights", "mode", "global_weights", "precision", "size_g", "size_p")


def _cached_segmenter(spec: ModelSpec) -> Segmenter:
    """The process's Segmenter for ``spec``: a dask worker loads it once."""
    if spec not in _SEGMENTERS:
        _SEGMENTERS.clear()  # one model per process
        _SEGMENTERS[spec] = spec.load()
    return _SEGMENTERS[spec]


def _model_record(spec: ModelSpec) -> dict:
    """What of the model settings a resumed run must share, JSON-shaped (so
    it compares equal after a round trip through the store's attributes)."""
    record = {k: getattr(spec, k) for k in _RECORDED}
    record = {k: (v.value if isinstance(v, Enum) else v) for k, v in record.items()}
    if spec.coarse_to_fine is not None:  # absent when off: stores written before the option still resume
        ctf = spec.coarse_to_fine
        record["coarse_to_fine"] = {"margin": ctf.margin, "background": list(ctf.background)}
    return record


def open_level0(image_path: str):
    """Level 0 of the image as a lazy (H, W, 3) uint8 array."""
    from glnet.io.readers import open_image

    return open_image(image_path).levels[0]


def compute_scene(spec: ModelSpec, image_path: str, grid: SceneGrid, index: int) -> tuple[int, PatchResults]:
    """One scene, start to end: what a worker runs."""
    session = SceneSession(_cached_segmenter(spec), open_level0(image_path), grid.scene, grid.overlap)
    for _ in session.run_scene(index):
        pass
    return index, session.finished[index]


def _blocks(shape: tuple[int, int], block: int) -> list[Region]:
    h, w = shape
    return [(t, l, min(t + block, h), min(l + block, w)) for t in range(0, h, block) for l in range(0, w, block)]


def _pair(values: np.ndarray) -> tuple[int, int]:
    return int(values[0]), int(values[1])


class _SceneFiles:
    """Finished scenes saved in the output store (the resume record), with a
    small in-memory cache."""

    def __init__(self, folder: Path, keep: int = 6):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._cache: OrderedDict[int, PatchResults] = OrderedDict()
        self.keep = keep

    def _path(self, index: int) -> Path:
        return self.folder / f"scene-{index:06d}.npz"

    def done(self) -> set[int]:
        return {int(p.stem.split("-")[1]) for p in self.folder.glob("scene-*.npz")}

    def save(self, index: int, result: PatchResults) -> None:
        with atomic_write(self._path(index)) as f:
            arrays: dict[str, Any] = {"size": result.size, "origins": np.array(result.origins)}
            arrays |= {"patch": result.patch, "logits": result.logits}
            if result.skipped is not None:
                arrays["skipped"] = result.skipped
            np.savez(f, **arrays)
        self._remember(index, result)

    def load(self, index: int) -> PatchResults:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        with np.load(self._path(index)) as z:
            result = PatchResults(
                _pair(z["size"]),
                [_pair(o) for o in z["origins"]],
                _pair(z["patch"]),
                z["logits"],
                z["skipped"] if "skipped" in z.files else None,
            )
        self._remember(index, result)
        return result

    def _remember(self, index: int, result: PatchResults) -> None:
        self._cache[index] = result
        while len(self._cache) > self.keep:
            self._cache.popitem(last=False)

    def drop(self, index: int) -> None:
        self._cache.pop(index, None)
        self._path(index).unlink(missing_ok=True)


def _block_result(grid: SceneGrid, scenes: _SceneFiles, block: Region) -> Segmentation:
    parts = {}
    for i in grid.covering(block):
        t, l, _, _ = grid.boxes[i]
        sub = overlap(block, grid.boxes[i])
        seg = scenes.load(i).result(shift(sub, -t, -l))
        parts[i] = Segmentation(sub, seg.logits, seg.labels, seg.patches_skipped)
    return blend(grid, block, parts)


def segment_to_store(
    spec: ModelSpec,
    image_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    scene_size: int | None = None,
    overlap: int | None = None,
    chunk: int = 512,
    name: str = "glnet",
    resume: bool = False,
    overwrite: bool = False,
    workers: int = 0,
    scheduler: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    review: bool = False,
) -> LabelStore:
    """Segment ``image_path`` into the OME-Zarr label store ``out``.

    ``workers`` > 0 starts a local dask cluster of that many processes;
    ``scheduler`` is the address of an existing one.  ``progress(done,
    total)`` counts scenes.  ``review`` also writes, for reviewing the
    result, ``confidence`` (max softmax x 255, uint8, level-0 size) and
    ``probabilities`` (class probabilities averaged over 8 x 8 px, float16,
    C x H/8 x W/8) beside the labels."""
    image_path, out = str(image_path), Path(out)
    image = open_level0(image_path)
    shape = (int(image.shape[0]), int(image.shape[1]))
    seg = _cached_segmenter(spec)
    scene = scene_size or seg.checkpoint.scene_size
    grid = SceneGrid(*shape, scene, scene // 8 if overlap is None else overlap)
    run = {
        "image": str(Path(image_path).resolve()),
        "shape": list(shape),
        "model": _model_record(spec),
        "mode": seg.mode,
        "scene_size": grid.scene,
        "overlap": grid.overlap,
        "chunk": chunk,
        "review": review,
    }
    store = _open_output(out, name, shape, seg, run, chunk, resume, overwrite)
    review_arrays = _review_arrays(store, len(seg.checkpoint.classes)) if review else None
    block = chunk * BLOCK_CHUNKS
    blocks = _blocks(shape, block)
    written = {tuple(b) for b in store.attrs.get("blocks_done", [])}
    scenes = _SceneFiles(out / ".glnet" / f"run-{name}" / "scenes")
    saved = scenes.done()
    pending = [b for b in blocks if b not in written]
    needed = sorted({i for b in pending for i in grid.covering(b)})
    todo = [i for i in needed if i not in saved]
    log.info("%d scenes (%d to compute), %d blocks to write", len(grid), len(todo), len(pending))

    total, done = len(needed), len(needed) - len(todo)
    if progress:
        progress(done, total)
    for index, result in _compute(spec, image_path, grid, todo, seg, workers, scheduler):
        scenes.save(index, result)
        saved.add(index)
        done += 1
        ready = [b for b in pending if all(i in saved for i in grid.covering(b))]
        for b in ready:
            _write_block(store, review_arrays, b, _block_result(grid, scenes, b))
            written.add(b)
        pending = [b for b in pending if b not in written]
        if ready:
            store.update_attrs(blocks_done=sorted(list(b) for b in written))
        still = {i for b in pending for i in grid.covering(b)}
        for i in saved - still:
            scenes.drop(i)
        saved &= still
        if progress:
            progress(done, total)
    if pending:  # every needed scene was saved before: the blocks are only left to write
        for b in pending:
            _write_block(store, review_arrays, b, _block_result(grid, scenes, b))
            written.add(b)
        store.update_attrs(blocks_done=sorted(list(b) for b in written))
    store.update_attrs(complete=True)
    shutil.rmtree(out / ".glnet" / f"run-{name}", ignore_errors=True)
    return store


def _review_arrays(store: LabelStore, num_classes: int) -> tuple[ConfidenceMap, Any]:
    """The confidence map (glnet.store.confidence) and the 1/8-size class probabilities."""
    import zarr

    confidence = ConfidenceMap.open(store)
    assert confidence is not None
    root = zarr.open_group(store.path, mode="r+")
    if "probabilities" not in root:
        h, w = store.shape
        s = PROBABILITY_STEP
        root.create_array(
            "probabilities",
            shape=(num_classes, -(-h // s), -(-w // s)),
            chunks=(num_classes, store.chunk, store.chunk),
            dtype="float16",
            fill_value=0,
            dimension_names=["c", "y", "x"],
        )
    return confidence, root["probabilities"]


def _write_block(store: LabelStore, review_arrays, block: Region, result: Segmentation) -> None:
    store.write(block, result.labels, edit=False)
    if review_arrays is None:
        return
    confidence, probabilities = review_arrays
    confidence.write(block, confidence_from_logits(result.logits))
    z = result.logits - result.logits.max(0, keepdims=True)
    p = np.exp(z)
    p /= p.sum(0, keepdims=True)
    t, l = block[:2]
    s = PROBABILITY_STEP  # blocks start on multiples of s; the image edge may cut the last cell short
    c, h, w = p.shape
    ph, pw = -(-h // s), -(-w // s)
    padded = np.full((c, ph * s, pw * s), np.nan, np.float32)
    padded[:, :h, :w] = p
    cells = np.nanmean(padded.reshape(c, ph, s, pw, s), axis=(2, 4))
    probabilities[:, t // s : t // s + ph, l // s : l // s + pw] = cells.astype(np.float16)


def _scene_failed(grid: SceneGrid, index: int, error: BaseException) -> GLNetError:
    t, l, b, r = grid.boxes[index]
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    return GLNetError(
        f"scene {index} (rows {t}-{b}, columns {l}-{r}) failed: {message}; "
        "finished scenes are kept: fix the cause and run again with --resume"
    )


def _open_output(
    out: Path, name, shape, seg: Segmenter, run: dict, chunk: int, resume: bool, overwrite: bool
) -> LabelStore:
    if out.exists() and resume:
        store = LabelStore.open(out, name)
        previous = store.attrs.get("run")
        if previous != run:
            raise GLNetError(
                f"{out} was written by a different run (image, model or scene settings differ): cannot --resume it"
            )
        return store
    if out.exists() and not overwrite:
        raise GLNetError(f"{out} exists: pass --resume to continue that run or --overwrite to replace it")
    return LabelStore.create(
        out,
        shape,
        seg.checkpoint.classes,
        name=name,
        chunk=chunk,
        overwrite=overwrite,
        attrs={"run": run, "blocks_done": [], "complete": False},
    )


def _compute(spec, image_path, grid, todo, seg, workers, scheduler) -> Iterator[tuple[int, PatchResults]]:
    if not todo:
        return
    if not workers and not scheduler:
        session = SceneSession(seg, open_level0(image_path), grid.scene, grid.overlap)
        for i in todo:
            try:
                for _ in session.run_scene(i):
                    pass
            except (GLNetError, RuntimeError, OSError) as e:
                raise _scene_failed(grid, i, e) from e
            yield i, session.finished.pop(i)
        return
    yield from _compute_distributed(spec, image_path, grid, todo, workers, scheduler)


def _compute_distributed(spec, image_path, grid, todo, workers, scheduler) -> Iterator[tuple[int, PatchResults]]:
    from dask.distributed import Client, LocalCluster, as_completed

    if scheduler:
        cluster, client = None, Client(scheduler)
    else:
        threads = spec.threads or max(1, (os.cpu_count() or 1) // workers)
        spec = spec.replace(threads=threads)
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    try:
        futures = {client.submit(compute_scene, spec, image_path, grid, i, pure=False): i for i in todo}
        for future in as_completed(futures):
            try:
                index, result = future.result()
            except Exception as e:  # a worker's error, whatever it was, names its scene
                raise _scene_failed(grid, futures[future], e) from e
            future.release()
            yield index, result
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
