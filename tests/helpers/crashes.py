"""Killing an operation at every step: the label store's crash tests.

:func:`kill_at_every_step` runs an operation once per fault point
(``glnet.faults``) and kills it there with SIGKILL, each time on a fresh copy
of the files.  The kills happen in children forked from one runner process
that imported everything (and loaded the model) once, so a kill costs the
operation's own time, not an interpreter start.  The operations are the
functions of this module, named as ``"helpers.crashes:NAME"``.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from helpers import REPO

EDIT_REGION = (5, 5, 150, 120)  # crosses chunks of every level of a 300 x 250 store with chunk 64


def edit_labels() -> np.ndarray:
    b, r = EDIT_REGION[2] - EDIT_REGION[0], EDIT_REGION[3] - EDIT_REGION[1]
    labels = np.full((b, r), 4, np.uint8)
    labels[::7] = 2
    return labels


def edit_op(work: Path, ctx) -> None:
    """One edit that also prunes the oldest undo data (the store holds UNDO_KEEP edits)."""
    from glnet.store.labelstore import LabelStore

    LabelStore.open(work / "s.zarr").write(EDIT_REGION, edit_labels(), note="killed")


def undo_op(work: Path, ctx) -> None:
    from glnet.store.labelstore import LabelStore

    LabelStore.open(work / "s.zarr").undo()


def stream_prepare(cfg: dict):
    """Load the model once, before forking (one torch thread: safe after fork)."""
    import torch

    import glnet.io.readers  # noqa: F401  (imported once, not in every child)
    from glnet.inference.stream import ModelSpec, _cached_segmenter

    torch.set_num_threads(1)
    spec = ModelSpec(**cfg["spec"])
    _cached_segmenter(spec)  # the process's model, as a dask worker keeps it: every child inherits it
    return spec


def stream_op(work: Path, spec) -> None:
    from glnet.inference.stream import segment_to_store

    kw = json.loads((work.parent / "stream.json").read_text())
    segment_to_store(spec, kw.pop("image"), work / "out.zarr", **kw)


def _resolve(name: str | None):
    if not name:
        return None
    module, _, attr = name.partition(":")
    return getattr(importlib.import_module(module), attr)


def _runner_main() -> None:
    import ome_zarr.writer  # noqa: F401  (imported once here, not in every child)

    import glnet.store.labelstore  # noqa: F401
    from glnet import faults

    cfg = json.loads(sys.argv[1])
    ctx = _resolve(cfg.get("prepare"))(cfg) if cfg.get("prepare") else None
    op = _resolve(cfg["op"])
    results = {}
    for k in cfg["steps"]:
        work = Path(cfg["workdir"]) / f"k{k:04d}"
        if cfg.get("pristine"):
            shutil.copytree(cfg["pristine"], work, symlinks=True)
        else:
            work.mkdir(parents=True)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                faults.stop_at(k, cfg["action"])
                op(work, ctx)
            except BaseException as e:
                print(f"step {k}: {type(e).__name__}: {e}", file=sys.stderr)
                code = 3
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        results[k] = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    print(json.dumps(results))


def kill_at_every_step(
    op: str, workdir: Path, steps: list[int], *, pristine: Path | None = None, prepare: str | None = None, **cfg
) -> dict[int, Path]:
    """Run ``op`` once per step k in ``steps``, killed with SIGKILL at point k;
    returns {k: the folder it ran in}. Fails unless every run died by the kill."""
    config = {
        "op": op,
        "steps": steps,
        "workdir": str(workdir),
        "pristine": str(pristine) if pristine else None,
        "prepare": prepare,
        "action": "kill",
        **cfg,
    }
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])}
    code = "from helpers.crashes import _runner_main; _runner_main()"
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(config)], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {int(k): v for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}
    wrong = {k: v for k, v in results.items() if v != -signal.SIGKILL}
    assert not wrong, f"runs that did not die at their step (exit codes): {wrong}\n{proc.stderr[-3000:]}"
    return {k: workdir / f"k{k:04d}" for k in steps}


def coarser(a: np.ndarray) -> np.ndarray:
    """2x2 mode (ties: the smaller class), an odd edge repeated: what each
    level must be of the one below; counted with one-hot sums, independently
    of the store's code."""
    h, w = a.shape
    a = np.pad(a, ((0, h % 2), (0, w % 2)), mode="edge").astype(np.int64)
    n = int(a.max()) + 1
    counts = np.zeros((a.shape[0] // 2, a.shape[1] // 2, n), np.int64)
    for dy in (0, 1):
        for dx in (0, 1):
            q = a[dy::2, dx::2]
            np.add.at(counts, (*np.indices(q.shape), q), 1)
    return counts.argmax(axis=2).astype(np.uint8)  # argmax: the first (smallest) of equal counts


def leftovers(store_path: Path) -> list[str]:
    """Files a finished or rolled-back write must not leave: a journal,
    hidden temporary files, zarr's partial chunks."""
    glnet = store_path / ".glnet"
    found = [p for p in glnet.rglob("journal") if p.is_dir()]
    found += [p for p in glnet.rglob(".*.tmp")]
    found += list((store_path / "labels").rglob("*.partial"))
    return [str(p.relative_to(store_path)) for p in found]
