"""Per-tile cost of writing predictions into a label store, as the plugin does.

    python benchmarks/bench_store_write.py [--rounds 3] [--blocky] [--dir /tmp] [--profile OUT.prof]

A 2448 x 2448 store with 512 px chunks (the plugin's), four 1024 px tiles of
random labels (< 7) and confidence: each tile is ``LabelStore.write(edit=False)``
with the plugin's ``view`` attrs (what ``session._write_predictions`` does),
then ``ConfidenceMap.write``.  Random labels are the worst case for zstd,
which then takes most of the time; ``--blocky`` writes 16 px cells of one
value instead, closer to a model's output.  Prints the median and best ms per
tile of each part, the CPU time (all threads: steadier than wall time on a
busy machine, but blind to fsync waits) and the fsyncs per tile.  Use a folder on a real disk
(fsyncs cost nothing in /dev/shm); glnet before write() took ``attrs`` is
timed with a separate update_attrs.
"""

from __future__ import annotations

import argparse
import cProfile
import inspect
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from glnet.classes import ClassTable
from glnet.store.confidence import ConfidenceMap
from glnet.store.labelstore import LabelStore

SIDE, TILE, CHUNK = 2448, 1024, 512
TILES = [(t, l, t + TILE, l + TILE) for t in (0, TILE) for l in (0, TILE)]

_fsyncs = 0
_real_fsync = os.fsync


def _counting_fsync(fd: int) -> None:
    global _fsyncs
    _fsyncs += 1
    _real_fsync(fd)


def write_predictions(store: LabelStore, tile, labels, refined: list) -> None:
    """What napari_glnet.session writes per refined tile."""
    refined.append(list(tile))
    attrs = {"view": {"model": "bench", "refined": refined}}
    if "attrs" in inspect.signature(store.write).parameters:
        store.write(tile, labels, edit=False, attrs=attrs)
    else:  # glnet before write() took attrs
        store.write(tile, labels, edit=False)
        store.update_attrs(**attrs)


def tile_values(rng: np.random.Generator, low: int, high: int, blocky: bool) -> np.ndarray:
    if not blocky:
        return rng.integers(low, high, (TILE, TILE), dtype=np.uint8)
    cells = rng.integers(low, high, (TILE // 16, TILE // 16), dtype=np.uint8)
    return np.repeat(np.repeat(cells, 16, 0), 16, 1)


def one_round(folder: Path, rng: np.random.Generator, blocky: bool) -> list[tuple[float, float, float, int]]:
    """(write ms, confidence ms, CPU ms of both, fsyncs) of each tile of a fresh store."""
    global _fsyncs
    store = LabelStore.create(folder / "s.zarr", (SIDE, SIDE), ClassTable.default(7), chunk=CHUNK, overwrite=True)
    cmap = ConfidenceMap.open(store)
    assert cmap is not None
    refined: list = []
    out = []
    for tile in TILES:
        labels = tile_values(rng, 0, 7, blocky)
        confidence = tile_values(rng, 1, 256, blocky)
        _fsyncs = 0
        c0, t0 = time.process_time(), time.perf_counter()
        write_predictions(store, tile, labels, refined)
        t1 = time.perf_counter()
        cmap.write(tile, confidence)
        t2, c2 = time.perf_counter(), time.process_time()
        out.append(((t1 - t0) * 1000, (t2 - t1) * 1000, (c2 - c0) * 1000, _fsyncs))
    store.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--blocky", action="store_true", help="16 px cells of one value, not random pixels")
    p.add_argument("--dir", default=None, help="where to make the store (default: the temp folder)")
    p.add_argument("--profile", default=None, help="save a cProfile of the rounds here")
    args = p.parse_args()
    os.fsync = _counting_fsync
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        prof = cProfile.Profile() if args.profile else None
        if prof:
            prof.enable()
        rows = [row for _ in range(args.rounds) for row in one_round(Path(d), rng, args.blocky)]
        if prof:
            prof.disable()
            prof.dump_stats(args.profile)
    write, conf, cpu, fsyncs = zip(*rows)
    total = [a + b for a, b in zip(write, conf)]
    kind = "blocky" if args.blocky else "random"
    print(f"{len(rows)} tiles of {TILE} px ({kind}) in a {SIDE} px store (chunk {CHUNK}), ms per tile:")
    print(f"  {'':22} {'median':>7} {'best':>7}")
    parts = (
        ("labels write + attrs", write),
        ("confidence write", conf),
        ("total", total),
        ("total CPU (all threads)", cpu),
    )
    for name, ms in parts:
        print(f"  {name:22} {statistics.median(ms):7.1f} {min(ms):7.1f}")
    print(f"  {'fsyncs per tile':22} {statistics.median(fsyncs):7.0f}")


if __name__ == "__main__":
    main()
