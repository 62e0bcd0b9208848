"""Integer hashing and lattice value noise: the only randomness in a synthetic
scene, a pure function of (seed, coordinates), so any rectangle renders on
its own and equals the crop of a bigger render."""

from __future__ import annotations

import numpy as np


def mix(h: np.ndarray) -> np.ndarray:
    """Avalanche a uint32 array (the lowbias32 finaliser), so neighbouring keys look unrelated."""
    with np.errstate(over="ignore"):  # wrapping multiplication is the point
        h = h ^ (h >> np.uint32(16))
        h = h * np.uint32(0x7FEB352D)
        h = h ^ (h >> np.uint32(15))
        h = h * np.uint32(0x846CA68B)
        return h ^ (h >> np.uint32(16))


def hash_ints(
    seed: int, salt: int, a: np.ndarray | int, b: np.ndarray | int = 0, c: np.ndarray | int = 0
) -> np.ndarray:
    """A uint32 hash of integer coordinates: the only source of randomness in a scene."""
    key = (seed * 0x9E3779B1 + salt * 0x85EBCA77) & 0xFFFFFFFF
    h: np.ndarray = (np.asarray(a, np.int64) & 0xFFFFFFFF).astype(np.uint32) ^ np.uint32(key)
    h = mix(h) ^ (np.asarray(b, np.int64) & 0xFFFFFFFF).astype(np.uint32)
    h = mix(h)
    if not (isinstance(c, int) and c == 0):
        h = mix(h ^ (np.asarray(c, np.int64) & 0xFFFFFFFF).astype(np.uint32))
    return h


def unit(h: np.ndarray) -> np.ndarray:
    """uint32 hashes as float32 in [0, 1)."""
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / (1 << 24))


def smoothstep(t: np.ndarray) -> np.ndarray:
    return t * t * (np.float32(3) - np.float32(2) * t)


__all__ = ["hash_ints", "mix", "smoothstep", "unit"]
