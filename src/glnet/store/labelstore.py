"""The label store: a multiscale OME-Zarr label image that segmentations are
written into and that people correct in napari.

Layout (OME-NGFF 0.5, zarr v3, what ome-zarr-py writes by default)::

    PATH/                       root group (no image: the source image lives elsewhere)
      labels/                   "labels": [NAME]
        NAME/                   multiscales (axes y, x) + image-label (colors, properties)
          s0, s1, ...           level 0 first, each halving (ceil), chunk x chunk, zstd
      .glnet/NAME/              glnet's own state, outside the NGFF metadata
        state.json              class table, attrs, edit log, reviewed regions
        undo/EDIT_ID.npz        old level-0 contents of the last edits
        journal/                only while a write is under way: levelK.npy (old
                                contents), state.json (old state), journal.json (marker)
      .glnet/writer.lock        who has the store open for writing (see glnet.store.lock)

Every write is journalled: the old contents of every level region that will
change are saved (with a copy of ``state.json``) before the first chunk is
touched, and a marker file makes the journal valid. Then the levels and the
new state are written, and removing the marker commits. Files that only the
old state needs (the undo data of pruned or undone edits) are deleted after
the commit, and files a killed write leaves (hidden ``.tmp`` files, undo
data of an edit that never committed) are collected when the store is next
opened for writing. If the process dies before the commit, that open puts
the old contents back, so a store is never left half-written; every step is
fsynced in this order, so the same holds after a power cut. The kill tests
(tests/lib/test_store_crashes.py) stop a write at every step.

Long because a write is one transaction: the level writes, the journal that
makes them crash-safe, the undo data and the edit log share the store's
lock, levels and state file, and each step's order matters to the others;
split apart, every part would reach into the rest.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import shutil
import threading
import weakref
from datetime import UTC, datetime
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from glnet.atomic import atomic_write, fsync_dir, is_tmp_name, synced_write
from glnet.classes import ClassTable
from glnet.errors import GLNetError
from glnet.faults import point
from glnet.geometry import OVERVIEW_SIDE, Region, as_region, level_region, level_shapes
from glnet.io.omezarr import multiscales
from glnet.store import lock as writer_lock
from glnet.store.chunks import remove_partial_chunks, sync_chunks
from glnet.store.completion import Completion, completion

log = logging.getLogger(__name__)

STATE_VERSION = 1
UNDO_KEEP = 20
_MARKER = "journal.json"


# -- small helpers -------------------------------------------------------------
def downsample_mode(labels: np.ndarray) -> np.ndarray:
    """2x2 mode downsampling (ceil size); ties go to the smallest class index.

    An odd edge is padded by repeating it, which doubles the 1- or 2-pixel edge
    blocks and so keeps their class proportions. Labels are uint8 or uint16.
    """
    a = np.asarray(labels)
    h, w = a.shape
    if h % 2 or w % 2:
        a = np.pad(a, ((0, h % 2), (0, w % 2)), mode="edge")
    quads = [a[0::2, 0::2], a[0::2, 1::2], a[1::2, 0::2], a[1::2, 1::2]]
    wide = np.uint16 if a.dtype == np.uint8 else np.uint32  # holds votes << bits | ~class
    bits, top = (8, 255) if a.dtype == np.uint8 else (16, 65535)
    same = {pair: (quads[pair[0]] == quads[pair[1]]).view(np.uint8) for pair in combinations(range(4), 2)}
    best = np.zeros(quads[0].shape, wide)
    for i, q in enumerate(quads):
        votes = sum(same[min(i, j), max(i, j)] for j in range(4) if j != i).astype(wide)  # each pair compared once
        rank: np.ndarray = top - q.astype(wide)  # the smaller class ranks higher
        key = (votes << bits) | rank  # more votes first, then the smaller class
        best = np.maximum(best, key)
    return (top - (best & top)).astype(labels.dtype)


def _check_region(region: Any, shape: tuple[int, int]) -> Region:
    t, l, b, r = as_region(region)
    if not (0 <= t < b <= shape[0] and 0 <= l < r <= shape[1]):
        raise GLNetError(f"region {[t, l, b, r]} is empty or outside the label image ({shape[0]} x {shape[1]} px)")
    return (t, l, b, r)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write_json(path: Path, data: Any) -> None:
    with atomic_write(path) as f:
        f.write(json.dumps(data, indent=1).encode())


def _check_attrs(values: dict) -> None:
    try:
        json.dumps(values)
    except TypeError as exc:
        raise GLNetError(f"label store attrs must be JSON-serialisable: {exc}") from None


def _save_npz(path: Path, **arrays: Any) -> None:
    with atomic_write(path) as f:
        np.savez_compressed(f, **arrays)


def _save_npy(path: Path, array: np.ndarray) -> None:
    """A journal file: only fsynced, as the journal's marker (written
    atomically after it) is what makes it count."""
    with synced_write(path) as f:
        np.save(f, array)


def _changes(old: np.ndarray, new: np.ndarray, n_classes: int) -> dict[str, int]:
    if n_classes <= 256:  # a histogram of (old, new) pairs is cheaper than finding the changed pixels
        code = old.astype(np.int32) * n_classes + new
        counts = np.bincount(code.ravel(), minlength=n_classes * n_classes).reshape(n_classes, n_classes)
        np.fill_diagonal(counts, 0)
        pairs = zip(*np.nonzero(counts))
        return {f"{o}->{n}": int(counts[o, n]) for o, n in pairs}
    diff = old != new
    code = old[diff].astype(np.int64) * n_classes + new[diff]
    values, counts = np.unique(code, return_counts=True)
    return {f"{int(v) // n_classes}->{int(v) % n_classes}": int(c) for v, c in zip(values, counts)}


# -- the store -----------------------------------------------------------------
class LabelStore:
    """A multiscale label image on disk, with an edit log, undo and crash safety.

    Use :meth:`create` or :meth:`open`; one instance is safe to share between
    threads (writes are serialised). A store opened for writing holds the
    store's writer lock until :meth:`close` (or until the object is
    collected): another process that opens it for writing is refused with
    who holds it (:class:`glnet.store.lock.StoreLocked`) and may open it
    read-only. The state file is re-read on every call, so a reader sees
    the writer's committed edits.
    """

    def __init__(self, path: Path, name: str, group: zarr.Group, mode: str) -> None:
        self.path = path
        self.name = name
        self._group = group
        self._mode = mode
        self._levels = [_array(group, d["path"]) for d in _datasets(group)]
        state = self._load_state()
        self.classes = ClassTable.from_list(state["classes"])
        h, w = self._levels[0].shape
        self.shape = (int(h), int(w))
        self.chunk = int(self._levels[0].chunks[0])
        self._release: weakref.finalize | None = None
        if mode == "r+":
            self._lock = writer_lock.acquire(path)
            self._release = weakref.finalize(self, writer_lock.release, path)
        else:
            self._lock = threading.RLock()

    def close(self) -> None:
        """Give back the writer lock (a read-only store holds nothing)."""
        if self._release is not None:
            self._release()
        self._mode = "r"

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- creating and opening ---------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        shape: tuple[int, int],
        classes: ClassTable,
        *,
        name: str = "glnet",
        chunk: int = 512,
        min_size: int = OVERVIEW_SIDE // 2,
        overwrite: bool = False,
        attrs: dict | None = None,
    ) -> LabelStore:
        """Create an empty store (all class 0) for an image of ``shape`` (H, W),
        open for writing.

        ``state.json`` is written last: a folder without it is a creation that
        was interrupted (:meth:`open` says so; ``overwrite`` replaces it). An
        old store is replaced only when no other process has it open for
        writing."""
        path = Path(path)
        h, w = (int(v) for v in shape)
        if h < 1 or w < 1:
            raise GLNetError(f"label image shape must be positive, got {tuple(shape)}")
        if chunk < 1 or min_size < 1:
            raise GLNetError(f"chunk and min_size must be positive, got {chunk} and {min_size}")
        if not name or "/" in name or name.startswith("."):
            raise GLNetError(f"label image name must be a plain name, got {name!r}")
        exists = path.exists() or path.is_symlink()
        if exists and not overwrite:
            raise GLNetError(f"{path} exists: pass overwrite=True (--overwrite) to replace it")
        old_store = exists and (path / ".glnet").is_dir() and not path.is_symlink()
        if old_store:  # never pull a store from under its writer
            writer_lock.acquire(path)
        locked = old_store
        try:
            if exists:
                _remove_store(path)
            try:
                root = zarr.open_group(path, mode="w-", zarr_format=3)
            except (FileExistsError, zarr.errors.ContainsGroupError, zarr.errors.ContainsArrayError):
                raise GLNetError(f"{path} was created by another program meanwhile: not replacing it") from None
            (path / ".glnet").mkdir()
            if old_store:
                writer_lock.renew(path)  # the lock held on the old folder now guards the new one
            else:
                writer_lock.acquire(path)
                locked = True
            group = _new_label_image(path, root, (h, w), classes, name, chunk, min_size, attrs)
            log.info("created label store %s (%d x %d, chunk %d)", path, h, w, chunk)
            return cls(path, name, group, "r+")
        finally:
            if locked:
                writer_lock.release(path)  # the new instance holds its own share

    @classmethod
    def open(cls, path: str | os.PathLike[str], name: str | None = None, mode: str = "r+") -> LabelStore:
        """Open a store; with ``mode="r+"`` (for writing: takes the writer lock)
        an interrupted write is rolled back first and what it left is cleaned up.

        An incomplete store (a streaming run that did not finish) opens, and
        :attr:`completion` says which blocks are missing."""
        path = Path(path)
        if mode not in ("r", "r+"):
            raise GLNetError(f"mode must be 'r' or 'r+', got {mode!r}")
        if not path.is_dir():
            raise GLNetError(f"label store not found: {path}")
        try:
            labels = zarr.open_group(path / "labels", mode="r" if mode == "r" else "r+")
            attrs = labels.attrs.asdict()
            ome = attrs.get("ome")
            listed = (ome if isinstance(ome, dict) else attrs).get("labels", [])
            names = [str(n) for n in listed] if isinstance(listed, list) else []
        except (FileNotFoundError, ValueError, KeyError, TypeError) as exc:
            raise GLNetError(f"{path} is not a label store (no OME-Zarr labels group): {exc}") from None
        if not names:
            raise GLNetError(f"{path} is not a label store: its labels group lists no label images")
        if name is None:
            name = names[0]
        elif name not in names:
            raise GLNetError(f"{path} has no label image {name!r}; it has {', '.join(names)}")
        if not (path / ".glnet" / name / "state.json").is_file():
            if (path / ".glnet").is_dir():
                raise GLNetError(
                    f"{path} is an unfinished label store (its creation was interrupted): "
                    "write it again with --overwrite"
                )
            raise GLNetError(f"{path} is not a glnet label store (no .glnet/{name}/state.json)")
        try:
            group = labels[name]
            if not isinstance(group, zarr.Group):
                raise GLNetError("it is an array, not a group")
            _datasets(group)
        except (KeyError, GLNetError) as exc:
            raise GLNetError(f"{path}: label image {name!r} has no multiscales metadata ({exc})") from None
        store = cls(path, name, group, mode)
        try:
            store._recover()
        except BaseException:
            store.close()
            raise
        return store

    # -- reading ------------------------------------------------------------------
    @property
    def levels(self) -> list[zarr.Array]:
        """The zarr arrays, level 0 (full resolution) first."""
        return list(self._levels)

    @property
    def attrs(self) -> dict:
        """glnet's own metadata (source image, scenes done, ...): a copy."""
        return dict(self._load_state()["attrs"])

    def read(self, region: Region | None = None, level: int = 0) -> np.ndarray:
        """Labels of a level-0 ``region`` (whole image by default), at ``level``."""
        if not 0 <= level < len(self._levels):
            raise GLNetError(f"level {level} does not exist; the store has levels 0..{len(self._levels) - 1}")
        region = (0, 0, *self.shape) if region is None else _check_region(region, self.shape)
        t, l, b, r = level_region(region, level)
        return np.asarray(self._levels[level][t:b, l:r])

    @property
    def completion(self) -> Completion:
        """Whether every block of the run that fills this store was written
        (see :mod:`glnet.store.completion`)."""
        return completion(self._load_state()["attrs"], self.shape)

    def edit_log(self) -> list[dict]:
        """The recorded edits, oldest first."""
        return list(self._load_state()["edits"])

    def reviewed_regions(self) -> list[Region]:
        """Regions someone marked as checked (ready for training)."""
        return [as_region(e["region"]) for e in self._load_state()["reviewed"]]

    def corrected_regions(self) -> list[Region]:
        """Regions of the recorded edits (where the model was corrected)."""
        return [as_region(e["region"]) for e in self._load_state()["edits"]]

    # -- writing ------------------------------------------------------------------
    def write(
        self,
        region: Region,
        labels: np.ndarray,
        *,
        edit: bool = True,
        author: str | None = None,
        note: str = "",
        attrs: dict | None = None,
    ) -> dict | None:
        """Write level-0 labels into ``region`` and rebuild the coarser levels there.

        ``edit=True`` (a person's correction) records an edit-log entry and undo
        data and returns the entry; ``edit=False`` (the segmenter writing its
        predictions) records nothing. ``attrs`` are merged into :attr:`attrs`
        by the same state write, so a writer's record of what it wrote (the
        plugin's refined tiles, a run's blocks) commits with the labels and
        costs no second one. Nothing but ``attrs`` is written, and None is
        returned, when no pixel changes.
        """
        self._check_writable()
        _check_attrs(attrs or {})
        region = _check_region(region, self.shape)
        labels = np.asarray(labels)
        t, l, b, r = region
        if labels.shape != (b - t, r - l):
            raise GLNetError(f"labels have shape {labels.shape} but region {list(region)} is {b - t} x {r - l} px")
        if labels.dtype.kind not in "iub":
            raise GLNetError(f"labels must be integer class indices, got {labels.dtype}")
        if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= len(self.classes)):
            n = len(self.classes)
            raise GLNetError(f"labels hold values outside 0..{n - 1} (the class table has {n} classes)")
        labels = labels.astype(self._levels[0].dtype, copy=False)
        with self._lock:
            around, old = self._read_around(region)
            if np.array_equal(old, labels):  # far cheaper than counting the changes
                log.debug("write to %s changes nothing", list(region))
                if attrs:
                    self.update_attrs(**attrs)
                return None
            entry = None
            if edit:
                entry = {
                    "id": None,
                    "time": _now(),
                    "author": author or _user(),
                    "region": list(region),
                    "note": note,
                    "changes": _changes(old, labels, len(self.classes)),
                }
            self._transaction(region, labels, around, old, entry=entry, attrs=attrs)
            return entry

    def undo(self) -> dict | None:
        """Undo the last recorded edit (all levels) and drop it from the log; None if none."""
        self._check_writable()
        with self._lock:
            state = self._load_state()
            if not state["edits"]:
                return None
            entry = state["edits"][-1]
            undo_file = self._dir / "undo" / f"{entry['id']}.npz"
            if not undo_file.is_file():
                raise GLNetError(
                    f"edit {entry['id']} can no longer be undone (only the last {UNDO_KEEP} edits keep undo data)"
                )
            with np.load(undo_file) as z:
                old = z["labels"]
            region = as_region(entry["region"])
            around, current = self._read_around(region)
            self._transaction(region, old, around, current, undo=entry)
            log.info("undid edit %s in %s", entry["id"], entry["region"])
            return entry

    def mark_reviewed(self, region: Region, note: str = "") -> None:
        """Record that a person checked ``region`` (export uses it for retraining)."""
        self._check_writable()
        region = _check_region(region, self.shape)
        with self._lock:
            state = self._load_state()
            state["reviewed"].append({"region": list(region), "note": note, "time": _now(), "author": _user()})
            _write_json(self._dir / "state.json", state)

    def update_attrs(self, **values: Any) -> None:
        """Merge JSON-serialisable ``values`` into :attr:`attrs` (saved atomically)."""
        self._check_writable()
        _check_attrs(values)
        with self._lock:
            state = self._load_state()
            state["attrs"].update(values)
            _write_json(self._dir / "state.json", state)

    # -- internals -------------------------------------------------------------------
    @property
    def _dir(self) -> Path:
        return self.path / ".glnet" / self.name

    def _check_writable(self) -> None:
        if self._mode == "r":
            raise GLNetError(f"{self.path} was opened read-only (mode 'r')")

    def _load_state(self, text: bytes | None = None) -> dict:
        """The state file, or ``text`` just read from it (a write reads it once).

        Re-read every time: another process (segmenter, napari) may have changed it."""
        try:
            state = json.loads((self._dir / "state.json").read_bytes() if text is None else text)
        except (OSError, ValueError) as exc:
            raise GLNetError(f"cannot read {self._dir / 'state.json'}: {exc}") from None
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise GLNetError(f"{self._dir / 'state.json'} is not a version-{STATE_VERSION} glnet label state")
        return state

    def _source(self, region: Region, level: int) -> Region:
        """The pixels of ``level`` that the next level's pixels over ``region`` are made of."""
        t, l, b, r = region
        h, w = self._levels[level].shape
        return (t - t % 2, l - l % 2, min(b + b % 2, h), min(r + r % 2, w))

    def _read_around(self, region: Region) -> tuple[np.ndarray, np.ndarray]:
        """Level-0 labels of the 2x2-aligned ``region`` (what level 1 is made of) and,
        as a copy, of ``region`` itself: one read serves both."""
        st, sl, sb, sr = self._source(region, 0)
        around = np.asarray(self._levels[0][st:sb, sl:sr])
        t, l, b, r = region
        return around, around[t - st : b - st, l - sl : r - sl].copy()

    def _plan(self, region: Region, labels: np.ndarray, around: np.ndarray) -> list[tuple[Region, np.ndarray]]:
        """New contents of every level: [(level region, labels)], level 0 first."""
        plan = [(region, labels)]
        for k in range(1, len(self._levels)):
            (pt, pl, pb, pr), prev = plan[-1]
            st, sl, sb, sr = self._source((pt, pl, pb, pr), k - 1)
            t, l, b, r = st // 2, sl // 2, (sb + 1) // 2, (sr + 1) // 2
            if (st, sl, sb, sr) == (pt, pl, pb, pr):  # level k-1 is all new there: nothing to read
                source = prev
            else:
                source = around if k == 1 else np.asarray(self._levels[k - 1][st:sb, sl:sr])
                source[pt - st : pb - st, pl - sl : pr - sl] = prev
            plan.append(((t, l, b, r), downsample_mode(source)))
        return plan

    def _transaction(
        self,
        region: Region,
        labels: np.ndarray,
        around: np.ndarray,
        old: np.ndarray,
        entry: dict | None = None,
        undo: dict | None = None,
        attrs: dict | None = None,
    ) -> None:
        """Write all levels and the state, or (after any failure or kill) nothing.

        Order: journal (old contents, old state), marker, levels, new state,
        marker removed (the commit), then what only the old state needed is
        deleted. Each step is on disk (fsynced) before the next begins."""
        plan = self._plan(region, labels, around)
        saved = (self._dir / "state.json").read_bytes()
        journal = self._dir / "journal"
        shutil.rmtree(journal, ignore_errors=True)  # an unfinished journal of a write that never began
        journal.mkdir(parents=True)
        fsync_dir(self._dir)  # the journal folder itself survives a power cut with its marker
        regions = []
        try:
            for k, ((t, l, b, r), _) in enumerate(plan):
                before = old if k == 0 else np.asarray(self._levels[k][t:b, l:r])
                _save_npy(journal / f"level{k}.npy", before)
                regions.append([t, l, b, r])
            with synced_write(journal / "state.json") as f:
                f.write(saved)
            fsync_dir(journal)  # every journal file is on disk before the marker can be
            _write_json(journal / _MARKER, {"regions": regions, "time": _now()})  # the journal is now valid
        except BaseException:  # nothing was touched yet
            shutil.rmtree(journal, ignore_errors=True)
            raise
        try:
            point("journal-saved")
            for k, ((t, l, b, r), data) in enumerate(plan):
                self._levels[k][t:b, l:r] = data
                self._sync_level(k, (t, l, b, r))
                point(f"level-written-{k}")
            state = self._commit_state(self._load_state(saved), old, entry, undo, attrs)
            point("state-saved")
        except BaseException:
            log.warning("write to %s failed; restoring the previous labels", list(region))
            try:
                self._rollback()
                self._collect_garbage()
            except BaseException as again:  # e.g. the disk is still full: the next open rolls back
                log.error("%s: rolling back failed too (%s); the next open for writing will", self.path, again)
            raise
        (journal / _MARKER).unlink()  # the commit
        fsync_dir(journal)
        point("committed")
        shutil.rmtree(journal, ignore_errors=True)
        if entry is not None or undo is not None:  # only a changed edit log leaves undo data unneeded
            self._prune_undo(state)

    def _sync_level(self, k: int, region: Region) -> None:
        """fsync the chunk files of ``region`` of level ``k`` (zarr does not)."""
        sync_chunks(self._levels[k], region)

    def _commit_state(
        self, state: dict, old: np.ndarray, entry: dict | None, undo: dict | None, attrs: dict | None
    ) -> dict:
        """Write the new ``state`` (the journalled one changed by the edit, the
        undo or ``attrs``), when there is anything to change; return it."""
        if entry is None and undo is None and not attrs:
            return state
        if attrs:
            state["attrs"].update(attrs)
        if undo is not None:
            state["edits"] = [e for e in state["edits"] if e["id"] != undo["id"]]
        if entry is not None:
            entry["id"] = state["next_edit"]
            state["next_edit"] += 1
            _save_npz(self._dir / "undo" / f"{entry['id']}.npz", labels=old)
            state["edits"].append(entry)
        _write_json(self._dir / "state.json", state)
        return state

    def _rollback(self) -> None:
        """Put back what the journal saved: every level region and the state
        file. Idempotent: a rollback that is itself killed is done again."""
        journal = self._dir / "journal"
        marker = json.loads((journal / _MARKER).read_text())
        for k, (t, l, b, r) in enumerate(marker["regions"]):
            self._levels[k][t:b, l:r] = np.load(journal / f"level{k}.npy")
            self._sync_level(k, (t, l, b, r))
            remove_partial_chunks(self._levels[k], (t, l, b, r))
        with atomic_write(self._dir / "state.json") as f:
            f.write((journal / "state.json").read_bytes())
        point("rolled-back")
        (journal / _MARKER).unlink()
        fsync_dir(journal)
        shutil.rmtree(journal, ignore_errors=True)

    def _recover(self) -> None:
        if self._mode != "r+":
            if (self._dir / "journal" / _MARKER).is_file():
                log.warning("%s has an unfinished write; open it for writing to roll it back", self.path)
            return
        journal = self._dir / "journal"
        if (journal / _MARKER).is_file():
            log.warning("%s: a write was interrupted; rolling back to the labels before it", self.path)
            self._rollback()
        elif journal.exists():  # died while saving the journal: no chunk was touched yet
            shutil.rmtree(journal, ignore_errors=True)
        self._collect_garbage()

    def _collect_garbage(self) -> None:
        """Delete what no committed state needs: undo data no logged edit needs
        and hidden temporary files of killed writes (after a rollback, and on
        opening for writing). Only the writer does this."""
        self._prune_undo(self._load_state())
        for f in (self.path / ".glnet").rglob(".*"):  # also a streaming run's saved scenes
            if is_tmp_name(f.name) and f.is_file():
                f.unlink(missing_ok=True)

    def _prune_undo(self, state: dict) -> None:
        """Delete undo data beyond the last UNDO_KEEP logged edits of ``state``
        (pruned, undone, or of an edit rolled back)."""
        keep = {f"{e['id']}.npz" for e in state["edits"][-UNDO_KEEP:]}
        for f in (self._dir / "undo").iterdir():
            if f.name not in keep:
                f.unlink(missing_ok=True)


def _new_label_image(path: Path, root: zarr.Group, shape, classes: ClassTable, name, chunk, min_size, attrs):
    """Arrays and NGFF metadata of a new label image, then its state (last)."""
    from ome_zarr.format import CurrentFormat
    from ome_zarr.writer import add_metadata, write_label_metadata, write_multiscales_metadata

    dtype = np.uint8 if len(classes) <= 256 else np.uint16
    group = root.create_group("labels").create_group(name)
    datasets = []
    for k, level_shape in enumerate(level_shapes(shape, 2 * min_size)):  # the coarsest: under 2 * min_size px
        group.create_array(
            f"s{k}",
            shape=level_shape,
            chunks=(chunk, chunk),
            dtype=dtype,
            fill_value=0,
            dimension_names=["y", "x"],
        )
        scale = float(1 << k)
        datasets.append({"path": f"s{k}", "coordinateTransformations": [{"type": "scale", "scale": [scale, scale]}]})
    write_multiscales_metadata(group, datasets=datasets, axes=["y", "x"], name=name)
    colors = [{"label-value": i, "rgba": [*c.color, 255]} for i, c in enumerate(classes.classes)]
    properties = [{"label-value": i, "name": c.name} for i, c in enumerate(classes.classes)]
    write_label_metadata(root["labels"], name, colors=colors, properties=properties)
    add_metadata(root["labels"], {"version": CurrentFormat().version})  # NGFF 0.5 wants it on every group
    glnet_dir = path / ".glnet" / name
    (glnet_dir / "undo").mkdir(parents=True)
    state = {
        "format": "napari-glnet-labels",
        "version": STATE_VERSION,
        "classes": classes.to_list(),
        "attrs": dict(attrs or {}),
        "edits": [],
        "next_edit": 1,
        "reviewed": [],
    }
    _write_json(glnet_dir / "state.json", state)
    return group


def _array(group: zarr.Group, key: str) -> zarr.Array:
    node = group[key]
    if not isinstance(node, zarr.Array):
        raise GLNetError(f"level {key!r} of {group.name} is not an array")
    return node


def _datasets(group: zarr.Group) -> list[dict]:
    ms = multiscales(group.attrs)
    if ms is None:
        raise GLNetError("no multiscales metadata")
    return ms["datasets"]


def is_label_store(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` looks like a label store (a .zarr folder with labels/
    and glnet's .glnet/), without opening it: what the napari reader asks."""
    path = Path(path)
    return path.suffix == ".zarr" and (path / "labels").is_dir() and (path / ".glnet").is_dir()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name, e.g. in a container
        return "unknown"


def _remove_store(path: Path) -> None:
    """Delete an old store for ``overwrite``, but never an unrelated folder or file."""
    if path.is_dir() and not path.is_symlink():
        if any(path.iterdir()) and not (path / "zarr.json").is_file():
            raise GLNetError(f"{path} exists and is not a zarr store: refusing to delete it")
        shutil.rmtree(path)
    else:
        raise GLNetError(f"{path} exists and is not a folder: refusing to replace it")
