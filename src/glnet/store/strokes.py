"""Unaccepted brush strokes, journaled as they are painted.

A person's corrections live in an editor (napari's edit layer) until they
are accepted into the label store; a crash, a kill or a power cut would lose
them there.  The editor appends every finished stroke to this journal,
flushed to disk before the next one, so at most the stroke being painted is
lost, and the next session can offer the strokes back (:meth:`pending`).

The file is ``<store>/.glnet/<name>/strokes.journal``, append-only: records
of an 8-byte little-endian length and an ``.npz`` payload.  The first record
names the edited region (level-0 top, left, bottom, right); each further one
is a stroke: its box inside the region, the labels there after the stroke and
the mask of pixels that differ from the labels the edit started from.  A
record cut short by a crash is ignored.  Accepting or discarding the edit
removes the file (:meth:`clear`).
"""

from __future__ import annotations

import io
import json
import logging
import os
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from glnet.errors import GLNetError
from glnet.store.labelstore import LabelStore, Region

log = logging.getLogger(__name__)

FILE_NAME = "strokes.journal"
_LENGTH = struct.Struct("<Q")


@dataclass(frozen=True)
class PendingEdit:
    """Strokes a previous session painted and never accepted nor discarded."""

    region: Region  # level-0 region of the edit
    labels: np.ndarray  # region-sized: the painted labels where ``painted``
    painted: np.ndarray  # region-sized bool: pixels the strokes changed
    strokes: int
    started: str  # when the edit began (ISO 8601, UTC)

    def apply(self, labels: np.ndarray) -> np.ndarray:
        """``labels`` of the region (the store's, now) with the strokes painted over them."""
        out = np.array(labels, copy=True)
        out[self.painted] = self.labels[self.painted]
        return out


def _pack(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    save: Any = np.savez_compressed  # (numpy's stubs reject **arrays)
    save(buffer, **arrays)
    payload = buffer.getvalue()
    return _LENGTH.pack(len(payload)) + payload


def _records(data: bytes) -> list[dict[str, np.ndarray]]:
    """The complete records of a journal's bytes (a torn last one is dropped)."""
    out, pos = [], 0
    while pos + _LENGTH.size <= len(data):
        (length,) = _LENGTH.unpack_from(data, pos)
        start, end = pos + _LENGTH.size, pos + _LENGTH.size + length
        if end > len(data):
            log.warning("the stroke journal ends in a torn record (a crash while writing it): ignored")
            break
        try:
            with np.load(io.BytesIO(data[start:end])) as z:
                out.append({k: z[k] for k in z.files})
        except (ValueError, OSError, EOFError) as exc:
            log.warning("unreadable stroke record ignored: %s", exc)
            break
        pos = end
    return out


class StrokeJournal:
    """The strokes of one edit of ``store``, appended one by one (see the module docstring).

    One editor writes it at a time (the process holding the store open for
    writing); reading :meth:`pending` is safe at any time."""

    def __init__(self, store: LabelStore) -> None:
        self.store = store
        self.path = Path(store.path) / ".glnet" / store.name / FILE_NAME
        self._region: Region | None = None

    def begin(self, region: Region) -> None:
        """Start the journal of a new edit of ``region`` (replacing any older one)."""
        t, l, b, r = (int(v) for v in region)
        self._region = (t, l, b, r)
        header = {
            "region": [t, l, b, r],
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "pid": os.getpid(),
        }
        self._write(_pack(header=np.frombuffer(json.dumps(header).encode(), np.uint8)), mode="wb")

    def record(self, box: Region, labels: np.ndarray, painted: np.ndarray) -> None:
        """Append one stroke: ``box`` (top, left, bottom, right inside the edit
        region), the labels there now and the mask of pixels that differ from
        the edit's start.  On disk (flushed and fsynced) when this returns."""
        if self._region is None:
            raise GLNetError("the stroke journal has no edit: call begin(region) first")
        t, l, b, r = (int(v) for v in box)
        labels, painted = np.asarray(labels), np.asarray(painted, bool)
        if labels.shape != (b - t, r - l) or painted.shape != labels.shape:
            raise GLNetError(f"a stroke of box {[t, l, b, r]} needs {b - t} x {r - l} labels, got {labels.shape}")
        self._write(_pack(box=np.array([t, l, b, r], np.int64), labels=labels, painted=painted), mode="ab")

    def _write(self, record: bytes, mode: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, mode) as f:
            f.write(record)
            f.flush()
            os.fsync(f.fileno())

    def pending(self) -> PendingEdit | None:
        """The strokes left by an edit that was neither accepted nor discarded;
        None when there are none (or the journal names a region this store lacks)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        records = _records(data)
        if not records or "header" not in records[0]:
            return None
        header = json.loads(records[0]["header"].tobytes().decode())
        t, l, b, r = header["region"]
        h, w = self.store.shape
        if not (0 <= t < b <= h and 0 <= l < r <= w):
            log.warning("%s names region %s outside the store: ignored", self.path, header["region"])
            return None
        labels = np.zeros((b - t, r - l), self.store.levels[0].dtype)
        painted = np.zeros((b - t, r - l), bool)
        strokes = 0
        for rec in records[1:]:
            bt, bl, bb, br = (int(v) for v in rec["box"])
            labels[bt:bb, bl:br] = rec["labels"]
            painted[bt:bb, bl:br] = rec["painted"]
            strokes += 1
        if not painted.any():
            return None
        return PendingEdit((t, l, b, r), labels, painted, strokes, str(header.get("started", "")))

    def clear(self) -> None:
        """The edit was accepted or discarded: nothing is pending any more."""
        self._region = None
        self.path.unlink(missing_ok=True)


__all__ = ["PendingEdit", "StrokeJournal"]
