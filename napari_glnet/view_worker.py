"""The plugin's background half: what runs in the worker thread.

The controller (napari_glnet.controller) turns viewer events into a
:class:`Request` and runs :func:`view_job` in a napari generator
``thread_worker``; the job touches no layer and reports plain values
(:class:`Ready`, the :class:`~napari_glnet.session.Overview`, each
:class:`~napari_glnet.session.RefineProgress`, :class:`Warn`) that the main
thread draws.  A :class:`Runner` keeps the loaded model and the session
between requests; only one job runs at a time, so it needs no locks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from glnet.errors import GLNetError
from glnet.geometry import Region
from glnet.inference.memory import Fallback, is_out_of_memory, with_memory_fallback
from glnet.inference.spec import ModelSpec

from .layers import level0
from .session import Overview, ViewSession, default_store_path, image_identity, open_store
from .workers import Failed

MAX_AUTO_SCENES = 4  # auto-refine (on pan/zoom) only while the view spans at most this many scenes


# -- what the form gives ---------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    """The widget's current choices (the controller asks for them per request)."""

    model: ModelSpec
    layer: Any  # napari.layers.Image
    store_path: str | None = None  # None: the image's default store in the cache
    model_mtime: float = 0.0  # the checkpoint file's: a rewritten file is loaded again


# -- messages from the worker (plain values: the main thread acts on them) -------
@dataclass
class Ready:
    session: ViewSession
    new: bool  # a new session: (re)make the layers
    device: str
    untrained: bool


@dataclass
class Loaded:
    """What a preload job returns: the model is in memory, on ``device``."""

    device: str
    untrained: bool  # loaded now, and the checkpoint says it was never trained


@dataclass
class Warn:
    message: str


@dataclass
class Done:
    region: Region
    refined: bool


@dataclass(frozen=True)
class Preload:
    """Load this model now, before anyone presses Segment view."""

    model: ModelSpec
    mtime: float  # the checkpoint file's (see Settings.model_mtime)
    threads: int = 1


@dataclass(frozen=True)
class Request:
    settings: Settings
    region: Region | None  # image pixels
    point: tuple[float, float] | None = None  # instead of a region: the patch block at this image pixel
    refine: bool | None = True  # None: only while the region spans at most MAX_AUTO_SCENES scenes
    threads: int = 1


def layer_pixels(layer) -> Any:
    """An image layer's level 0 as (H, W, 3) uint8, lazily where it was lazy."""
    data = level0(layer)
    ndim = len(data.shape) - (1 if layer.rgb else 0)
    if ndim != 2:
        raise GLNetError(f"GLNet segments 2D images; the layer '{layer.name}' has {ndim} dimensions")
    if isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 3 and data.shape[2] == 3:
        return data
    import dask.array as da

    from glnet.io.readers import to_rgb8

    return to_rgb8(da.asarray(data), layer.name)


class Runner:
    """The worker thread's state: the loaded model and the session, reused
    between requests.  Only one worker runs at a time, so no locks."""

    def __init__(self) -> None:
        self.model: tuple[ModelSpec, float] | None = None
        self.segmenter = None
        self.key: tuple | None = None
        self.session: ViewSession | None = None
        self.data = None  # held so the id() in key cannot be reused

    def segmenter_for(self, spec: ModelSpec, mtime: float):
        """The Segmenter of ``spec`` (loaded now unless it is the one in
        memory) and whether it was loaded now."""
        loaded = False
        model = (spec, mtime)
        if model != self.model:
            self.segmenter = self.model = self.session = self.key = self.data = None
            self.segmenter = spec.load()
            self.model, loaded = model, True
        return self.segmenter, loaded

    def has(self, spec: ModelSpec, mtime: float) -> bool:
        return self.model == (spec, mtime) and self.segmenter is not None

    def session_for(self, settings: Settings, raw, pixels) -> tuple[ViewSession, bool]:
        """The session of this layer's data (``raw``: what the layer holds,
        ``pixels``: it as RGB uint8), kept while neither changes."""
        layer = settings.layer
        key = (settings.model, settings.model_mtime, id(layer), id(raw), settings.store_path)
        if key == self.key and self.session is not None:
            return self.session, False
        path = settings.store_path or default_store_path(
            image_identity(getattr(layer.source, "path", None), raw, layer.name), layer.name
        )
        store = open_store(path, pixels.shape[:2], self.segmenter.checkpoint.classes, stem=layer.name)
        self.session = ViewSession(self.segmenter, pixels, store)
        self.key, self.data = key, raw
        return self.session, True


def view_job(runner: Runner, request: Request, raw, pixels) -> Iterator[Any]:
    """The worker's generator: Ready, the overview, then the refinement,
    one yield per patch batch; returns Done, or a Failed message for the user's
    problems (bad checkpoint, out of memory on the CPU, a store that must not
    be replaced) so they reach the user as one line."""
    from glnet.runtime import set_threads

    try:
        set_threads(request.threads)  # a worker thread's default is not what we want
        seg, loaded = runner.segmenter_for(request.settings.model, request.settings.model_mtime)
        session, new = runner.session_for(request.settings, raw, pixels)
        yield Ready(session, new, seg.device.type, loaded and bool(seg.checkpoint.extra.get("untrained")))
        region = session.block_at(*request.point) if request.point is not None else session.clip(request.region)
        yield from _with_fallback(runner, lambda: _overview_steps(session, region))
        refine = request.refine
        if refine is None:
            refine = len(session.grid.covering(region)) <= MAX_AUTO_SCENES
        if refine:
            yield from _with_fallback(runner, lambda: session.refine(region))
        return Done(region, refine)
    except (GLNetError, MemoryError, RuntimeError) as e:
        return _user_failure(e, "out of memory: lower the batch size, or segment a smaller region")


def load_job(runner: Runner, preload: Preload) -> Iterator[Any]:
    """Load the model in the background (at widget start, when the
    checkpoint or its settings change), so Segment view finds it in memory.
    A generator like :func:`view_job`, so the controller queues it the same
    way; it yields nothing and returns :class:`Loaded` or a Failed message."""
    from glnet.runtime import set_threads

    try:
        set_threads(preload.threads)
        seg, loaded = runner.segmenter_for(preload.model, preload.mtime)
        _warm_up()
    except (GLNetError, MemoryError, RuntimeError) as e:
        return _user_failure(e, "out of memory while loading the checkpoint")
    return Loaded(seg.device.type, loaded and bool(seg.checkpoint.extra.get("untrained")))
    yield  # a generator: the worker runs it like a view job


def _user_failure(error: Exception, out_of_memory: str) -> Failed:
    """The user's problem (a GLNetError, memory running out) as its one-line
    message; anything else is a bug and raised again."""
    if isinstance(error, GLNetError):
        return Failed(error)
    if is_out_of_memory(error):
        return Failed(out_of_memory)
    raise error


def _warm_up() -> None:
    """Import here, while the model loads, what the first Segment view would
    otherwise wait for: pandas, which napari imports when our first Labels
    layer is made (1-2 s the GUI thread would freeze), and ome-zarr, which a
    new label store is written with (0.5-1.2 s before the overview could start)."""
    import ome_zarr.writer  # noqa: F401
    import pandas  # noqa: F401


def _overview_steps(session: ViewSession, region: Region) -> Iterator[Overview]:
    for _ in session.run_overview(region):
        yield session.current_overview()


def _with_fallback(runner: Runner, steps: Callable[[], Iterator[Any]]) -> Iterator[Any]:
    """Run ``steps()``; out of memory, the library's fallback (half the batch,
    then the CPU) runs it again on the session's new Segmenter, which the
    runner keeps; the user is told each time (finished scenes are kept)."""

    def on(seg) -> Iterator[Any]:
        if seg is not runner.segmenter:
            runner.segmenter = seg
            runner.session.set_segmenter(seg)
        return steps()

    for item in with_memory_fallback(runner.segmenter, on):
        yield Warn(item.message) if isinstance(item, Fallback) else item


__all__ = [
    "MAX_AUTO_SCENES",
    "Done",
    "Loaded",
    "Preload",
    "Ready",
    "Request",
    "Runner",
    "Settings",
    "Warn",
    "layer_pixels",
    "load_job",
    "view_job",
]
