"""Synthetic land-cover scenes with exact ground truth, of any size.

Tests, the demo, benchmarks and training need aerial-looking images whose
labels are known exactly, at sizes (20000 x 20000 and more) that no real
labelled data set ships.  A :class:`SyntheticScene` is procedural: every pixel
is a pure function of ``(seed, row, col)``, built from hashed lattice value
noise and integer coordinate hashing, never from a random stream.  So any
rectangle can be rendered on its own, and rendering a sub-rectangle gives
exactly the crop of rendering a bigger one; ``glnet.data.synthetic_files.write_scene``
uses that to write huge pyramidal TIFFs tile by tile in bounded memory.

The classes are those of DeepGlobe (:data:`glnet.classes.DEEPGLOBE`), and the
scene has structure at several scales, so that global context matters:

* regions of hundreds to thousands of pixels (water, towns, farmland, forest,
  rangeland, barren land) from low-frequency noise thresholds;
* parcels of ~100-400 px: fields with their own colour and oriented row
  texture, and town blocks between roads, with buildings on lots;
* texture of a few pixels (canopy, shrubs, furrows) and mild sensor noise.

Some fields are coloured like rangeland or barren land, so the colour of a
small patch does not give its class away; the parcel layout around it does.
"""

from __future__ import annotations

import math
from numbers import Integral

import numpy as np

from glnet.data.noise import hash_ints, smoothstep, unit
from glnet.errors import GLNetError

UNKNOWN, URBAN, AGRICULTURE, RANGELAND, FOREST, WATER, BARREN = range(7)

FIELD_SIZE = (300.0, 170.0)  # mean field size (along, across the field grid), px
BLOCK_SIZE = (150.0, 120.0)  # mean town block size, roads included, px

# Integer salts, one per independent noise field, so fields never correlate.
_S_VEG, _S_URB, _S_WAT, _S_RIVER, _S_RIVER_ON, _S_AG, _S_WARP = 1, 2, 3, 4, 5, 6, 7
_S_PCOL, _S_PROW, _S_FIELD, _S_RCOL, _S_RROW, _S_BLOCK, _S_LOT, _S_TEX, _S_SENSOR = range(10, 19)

# 64 orientations for field rows; a table, so no transcendental runs per pixel.
_ANGLES = np.arange(64) * (math.pi / 64)
_COS = np.cos(_ANGLES).astype(np.float32)
_SIN = np.sin(_ANGLES).astype(np.float32)

# Field colours (RGB): greens, yellows, browns, and two that imitate rangeland
# and barren land, so only the layout tells those fields apart.
_FIELD_COLORS = np.array(
    [
        [62, 92, 44],
        [78, 108, 52],
        [98, 120, 62],
        [120, 128, 72],
        [138, 122, 84],
        [150, 130, 96],
        [112, 96, 70],
        [88, 84, 58],
        [120, 116, 80],
        [162, 146, 110],
    ],
    dtype=np.float32,
)
_ROOF_COLORS = np.array(
    [[178, 92, 70], [150, 80, 64], [196, 194, 186], [150, 150, 152], [100, 108, 122], [214, 208, 192], [128, 110, 96]],
    dtype=np.float32,
)


def check_int(value: object, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise GLNetError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in {low}..{high}"
        raise GLNetError(f"{name} must be {bound}, got {value}")
    return value


class SyntheticScene:
    """A procedural land-cover scene of ``height`` x ``width`` pixels.

    Pixels are a pure function of ``(seed, row, col)``: :meth:`render` of any
    rectangle equals the crop of a render of any larger one, so scenes far
    bigger than memory can be written tile by tile.
    """

    def __init__(self, height: int, width: int, seed: int = 0) -> None:
        self.height = check_int(height, "scene height", 1)
        self.width = check_int(width, "scene width", 1)
        self.seed = check_int(seed, "scene seed", 0, 2**32 - 1)
        # Per-scene orientation of the field grid and of the road grid.
        angle = float(unit(hash_ints(self.seed, 99, 0))) * 0.7 - 0.35
        self._fc, self._fs = np.float32(math.cos(angle)), np.float32(math.sin(angle))
        angle += float(unit(hash_ints(self.seed, 98, 0))) * 0.5 - 0.25
        self._rc, self._rs = np.float32(math.cos(angle)), np.float32(math.sin(angle))

    def __repr__(self) -> str:
        return f"SyntheticScene(height={self.height}, width={self.width}, seed={self.seed})"

    # -- noise -------------------------------------------------------------

    def _noise(self, rows: np.ndarray, cols: np.ndarray, scale: int, salt: int) -> np.ndarray:
        """Value noise with lattice spacing ``scale`` px on the grid ``rows x cols`` (absolute, int64).

        Separable: the lattice is hashed once for the cells the tile covers and
        interpolated along columns, then rows; each output pixel depends only on
        its own coordinates, whatever the tile.
        """
        iy, ix = rows // scale, cols // scale
        ty = smoothstep((rows % scale).astype(np.float32) / np.float32(scale))
        tx = smoothstep((cols % scale).astype(np.float32) / np.float32(scale))
        y0, x0 = int(iy[0]), int(ix[0])
        ly = np.arange(y0, int(iy[-1]) + 2, dtype=np.int64)
        lx = np.arange(x0, int(ix[-1]) + 2, dtype=np.int64)
        lattice = unit(hash_ints(self.seed, salt, ly[:, None], lx[None, :]))
        jx = ix - x0
        along = lattice[:, jx] * (np.float32(1) - tx) + lattice[:, jx + 1] * tx
        jy = iy - y0
        return along[jy] * (np.float32(1) - ty)[:, None] + along[jy + 1] * ty[:, None]

    def _noise_at(self, y: np.ndarray, x: np.ndarray, scale: int, salt: int) -> np.ndarray:
        """The same value noise at arbitrary float points (for small per-parcel tables)."""
        fy, fx = np.asarray(y, np.float64) / scale, np.asarray(x, np.float64) / scale
        iy, ix = np.floor(fy).astype(np.int64), np.floor(fx).astype(np.int64)
        ty, tx = smoothstep((fy - iy).astype(np.float32)), smoothstep((fx - ix).astype(np.float32))
        v = [unit(hash_ints(self.seed, salt, iy + dy, ix + dx)) for dy in (0, 1) for dx in (0, 1)]
        top = v[0] * (1 - tx) + v[1] * tx
        bottom = v[2] * (1 - tx) + v[3] * tx
        return top * (1 - ty) + bottom * ty

    def _fbm(self, rows: np.ndarray, cols: np.ndarray, octaves: tuple[tuple[int, float], ...], salt: int) -> np.ndarray:
        total = sum(w for _, w in octaves)
        out = np.zeros((rows.size, cols.size), np.float32)
        for i, (scale, weight) in enumerate(octaves):
            out += self._noise(rows, cols, scale, salt * 16 + i) * np.float32(weight / total)
        return out

    def _fbm_at(self, y: np.ndarray, x: np.ndarray, octaves: tuple[tuple[int, float], ...], salt: int) -> np.ndarray:
        total = sum(w for _, w in octaves)
        out = np.zeros(np.shape(y), np.float32)
        for i, (scale, weight) in enumerate(octaves):
            out += self._noise_at(y, x, scale, salt * 16 + i) * np.float32(weight / total)
        return out

    # -- cells: parcels and town blocks -------------------------------------

    def _cells(
        self, u: np.ndarray, period: float, salt: int, key: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Split the axis ``u`` into cells of about ``period`` px with jittered borders.

        Border k sits at ``(k + j) * period`` with ``j`` hashed from ``k`` (and
        from ``key``, e.g. the column a row of fields lies in, so that rows of
        neighbouring columns do not line up).  Returns the cell index, the
        distances to the cell's lower and upper borders, and the hash of each
        of those two borders (for per-border properties such as road width).
        """
        k0 = np.floor(u / np.float32(period)).astype(np.intp)
        klo, khi = int(k0.min()) - 1, int(k0.max()) + 2
        nk = khi - klo + 1
        ks = np.arange(klo, khi + 1)
        if key is None:
            glo, gkeys, flat = 0, np.zeros(1, np.int64), k0 - klo
        else:
            glo = int(key.min())
            gkeys = np.arange(glo, int(key.max()) + 1)
            flat = (key - glo).astype(np.intp) * nk + (k0 - klo)
        table_h = hash_ints(self.seed, salt, gkeys[:, None], ks[None, :]).ravel()
        table_b = ((ks[None, :] + unit(table_h).reshape(-1, nk) * 0.5 - 0.25) * period).astype(np.float32).ravel()
        # The cell is k0, or its neighbour when the jittered border moved past u.
        step = (u >= table_b.take(flat + 1)).view(np.int8) - (u < table_b.take(flat)).view(np.int8)
        flat += step
        cell = k0 + step
        lower, upper = table_b.take(flat), table_b.take(flat + 1)
        return cell, u - lower, upper - u, (table_h.take(flat), table_h.take(flat + 1))

    # -- rendering ---------------------------------------------------------

    def render(self, top: int, left: int, bottom: int, right: int) -> tuple[np.ndarray, np.ndarray]:
        """Render the half-open rectangle ``[top, bottom) x [left, right)``.

        Returns ``(rgb, labels)``: an (h, w, 3) uint8 image and the (h, w) uint8
        DeepGlobe class index of every pixel.
        """
        top = check_int(top, "top", 0, self.height - 1)
        left = check_int(left, "left", 0, self.width - 1)
        bottom = check_int(bottom, "bottom", top + 1, self.height)
        right = check_int(right, "right", left + 1, self.width)
        rows = np.arange(top, bottom, dtype=np.int64)
        cols = np.arange(left, right, dtype=np.int64)
        h, w = rows.size, cols.size
        y = rows.astype(np.float32)[:, None]
        x = cols.astype(np.float32)[None, :]

        # Large regions.
        veg = self._fbm(rows, cols, ((700, 0.5), (260, 0.3), (90, 0.15), (30, 0.05)), _S_VEG)
        urb = self._fbm(rows, cols, ((900, 0.55), (300, 0.3), (100, 0.15)), _S_URB)
        wat = self._fbm(rows, cols, ((1100, 0.5), (380, 0.3), (120, 0.15), (40, 0.05)), _S_WAT)
        river = np.abs(self._fbm(rows, cols, ((1500, 0.8), (400, 0.2)), _S_RIVER) - np.float32(0.5))
        river_on = self._noise(rows, cols, 2000, _S_RIVER_ON)

        lake_depth = np.float32(0.36) - wat
        river_depth = np.float32(0.012) - river
        is_water = (lake_depth > 0) | ((river_depth > 0) & (river_on > np.float32(0.45)))
        depth = np.maximum(lake_depth * np.float32(8), river_depth * np.float32(60))

        # Fields: a rotated, slightly warped grid of columns split into rows.
        warp_u = (self._noise(rows, cols, 350, _S_WARP) - np.float32(0.5)) * np.float32(40)
        warp_v = (self._noise(rows, cols, 350, _S_WARP + 50) - np.float32(0.5)) * np.float32(40)
        pu = x * self._fc + y * self._fs + warp_u
        pv = y * self._fc - x * self._fs + warp_v
        fcol, du0, du1, _ = self._cells(pu, FIELD_SIZE[0], _S_PCOL)
        frow, dv0, dv1, _ = self._cells(pv, FIELD_SIZE[1], _S_PROW, key=fcol)
        edge = np.minimum(np.minimum(du0, du1), np.minimum(dv0, dv1))
        field_info = self._field_table(fcol, frow)
        field_of = (frow - frow.min()) * (int(fcol.max() - fcol.min()) + 1) + (fcol - fcol.min())
        is_field = field_info["farm"].take(field_of)

        forest, barren, rangeland = np.uint8(FOREST), np.uint8(BARREN), np.uint8(RANGELAND)
        labels = np.where(veg > np.float32(0.55), forest, np.where(veg < np.float32(0.43), barren, rangeland))
        labels[is_field] = AGRICULTURE
        labels[field_info["wood"].take(field_of)] = FOREST

        # Towns: roads where the urban field is high, buildings on lots between them.
        near = urb > np.float32(0.605)
        road = np.zeros((h, w), bool)
        roof = np.full((h, w), -1, np.int16)
        shadow = np.zeros((h, w), bool)
        if near.any():
            town = self._town(x, y, near)
            road[near], roof[near], shadow[near] = town
        is_urban = (urb > np.float32(0.62)) | road | (roof >= 0) | shadow
        labels[is_urban] = URBAN
        labels[is_water] = WATER

        rgb = self._colour(rows, cols, x, y, labels, veg, depth, edge, field_info, field_of, road, roof, shadow)
        return rgb, labels

    def _field_table(self, fcol: np.ndarray, frow: np.ndarray) -> dict[str, np.ndarray]:
        """Per-field properties, one entry per (column, row) cell the tile touches."""
        cu = np.arange(int(fcol.min()), int(fcol.max()) + 1)
        cv = np.arange(int(frow.min()), int(frow.max()) + 1)
        grid_u, grid_v = np.meshgrid(cu, cv)
        gu, gv = grid_u.ravel(), grid_v.ravel()
        h = hash_ints(self.seed, _S_FIELD, gu, gv)
        # The field's centre in image coordinates decides whether it is farmland.
        cu_c, cv_c = (gu + 0.5) * FIELD_SIZE[0], (gv + 0.5) * FIELD_SIZE[1]
        fc, fs = float(self._fc), float(self._fs)
        cx, cy = cu_c * fc - cv_c * fs, cu_c * fs + cv_c * fc
        farm = self._fbm_at(cy, cx, ((800, 0.6), (300, 0.4)), _S_AG) > np.float32(0.53)
        farm &= (h & np.uint32(31)) != 0  # a few fields left wild
        wood = farm & ((h >> np.uint32(22)) % np.uint32(9) == 0)  # and a few planted with trees
        return {
            "farm": farm & ~wood,
            "wood": wood,
            "color": ((h >> np.uint32(5)) % np.uint32(len(_FIELD_COLORS))).astype(np.int16),
            "angle": ((h >> np.uint32(9)) & np.uint32(63)).astype(np.intp),
            "period": np.float32(4) + ((h >> np.uint32(15)) & np.uint32(7)).astype(np.float32),
            "stripes": ((h >> np.uint32(18)) & np.uint32(15)).astype(np.float32) * np.float32(0.014),
        }

    def _town(self, x: np.ndarray, y: np.ndarray, near: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Roads, roofs (palette index, -1 for none) and shadows for the pixels in ``near``.

        Blocks are cells of a rotated grid whose borders are roads; each block
        is cut into lots, and most whole lots hold a building with its shadow.
        """
        xs = np.broadcast_to(x, near.shape)[near]
        ys = np.broadcast_to(y, near.shape)[near]
        u = xs * self._rc + ys * self._rs
        v = ys * self._rc - xs * self._rs
        bcol, du0, du1, hu = self._cells(u, BLOCK_SIZE[0], _S_RCOL)
        brow, dv0, dv1, hv = self._cells(v, BLOCK_SIZE[1], _S_RROW, key=bcol)
        # Road half-widths 2..5 px, one road in seven a 15 px main road.
        half = [
            np.where(
                hh % np.uint32(7) == 0,
                np.float32(7.5),
                np.float32(2) + (hh >> np.uint32(3) & np.uint32(3)).astype(np.float32),
            )
            for hh in (*hu, *hv)
        ]
        road = (du0 < half[0]) | (du1 < half[1]) | (dv0 < half[2]) | (dv1 < half[3])
        # Lots of 16..31 px along the block, set back 3 px from the roads.
        bh = hash_ints(self.seed, _S_BLOCK, bcol, brow)
        lot_u = np.float32(16) + (bh & np.uint32(15)).astype(np.float32)
        lot_v = np.float32(16) + (bh >> np.uint32(4) & np.uint32(15)).astype(np.float32)
        lu, lv = du0 - half[0] - np.float32(3), dv0 - half[2] - np.float32(3)
        iu, iv = np.floor(lu / lot_u), np.floor(lv / lot_v)
        fu, fv = lu - iu * lot_u, lv - iv * lot_v
        whole = (lu >= 0) & (lv >= 0) & (du1 - half[1] - np.float32(3) >= lot_u - fu)
        whole &= dv1 - half[3] - np.float32(3) >= lot_v - fv
        lh = hash_ints(self.seed, _S_LOT, bh.astype(np.int64), iu.astype(np.int64), iv.astype(np.int64))
        built = whole & ((lh >> np.uint32(8) & np.uint32(7)) < np.uint32(6)) & ~road
        # Building = lot less margins of 2..5 px; its shadow falls 3 px further along both axes.
        m = [np.float32(2) + (lh >> np.uint32(s) & np.uint32(3)).astype(np.float32) for s in (0, 2, 4, 6)]
        end_u, end_v = lot_u - m[1], lot_v - m[3]
        inside = built & (fu >= m[0]) & (fu < end_u) & (fv >= m[2]) & (fv < end_v)
        fu, fv = fu - np.float32(3), fv - np.float32(3)
        shadow = built & ~inside & (fu >= m[0]) & (fu < end_u) & (fv >= m[2]) & (fv < end_v)
        roof = np.where(inside, (lh >> np.uint32(11)) % np.uint32(len(_ROOF_COLORS)), -1).astype(np.int16)
        return road, roof, shadow

    def _colour(
        self,
        rows: np.ndarray,
        cols: np.ndarray,
        x: np.ndarray,
        y: np.ndarray,
        labels: np.ndarray,
        veg: np.ndarray,
        depth: np.ndarray,
        edge: np.ndarray,
        field_info: dict[str, np.ndarray],
        field_of: np.ndarray,
        road: np.ndarray,
        roof: np.ndarray,
        shadow: np.ndarray,
    ) -> np.ndarray:
        """Paint every pixel as ``low + (high - low) * t`` from its palette entry, times a shade.

        Everything is computed on the whole tile with ``where`` (cheaper than
        boolean indexing per class); ``t`` and the shade carry the textures.
        """
        blotch = self._fbm(rows, cols, ((40, 0.6), (12, 0.4)), _S_TEX)
        fine = self._fbm(rows, cols, ((3, 0.5), (6, 0.5)), _S_TEX + 1)
        is_ag = labels == AGRICULTURE
        is_urban = labels == URBAN
        is_road = road & is_urban
        is_roof = (roof >= 0) & is_urban

        pal = labels.astype(np.intp)
        pal = np.where(is_road, _PAL_ROAD, pal)
        pal = np.where(is_roof, _PAL_ROOF + roof, pal)
        pal = np.where(is_ag, _PAL_FIELD + field_info["color"].take(field_of), pal)

        t = blotch * np.float32(1.4) - np.float32(0.2)  # town ground, fields
        t = np.where(labels == BARREN, t + veg - np.float32(0.35), t)
        t = np.where(labels == RANGELAND, blotch * np.float32(1.6) - np.float32(0.3), t)
        t = np.where(labels == FOREST, (fine + blotch) * np.float32(1.3) - np.float32(0.9), t)
        t = np.where(labels == WATER, depth + (fine - np.float32(0.5)) * np.float32(0.08), t)
        t = np.where(is_road | is_roof, fine, t)
        t = np.clip(t, 0, 1)

        # Field rows: a triangle wave along the field's own direction and period.
        angle = field_info["angle"].take(field_of)
        phase = (x * _COS.take(angle) + y * _SIN.take(angle)) / field_info["period"].take(field_of)
        tri = np.abs(phase - np.floor(phase) - np.float32(0.5)) * np.float32(4) - np.float32(1)
        shade = np.float32(1) + np.where(labels == WATER, np.float32(0.02), np.float32(0.1)) * (fine - np.float32(0.5))
        field_shade = np.float32(1) + tri * field_info["stripes"].take(field_of)
        field_shade = np.where(edge < np.float32(1.5), np.float32(0.8), field_shade)
        shade = np.where(is_ag, shade * field_shade, shade)
        shade = np.where((labels == RANGELAND) & (fine > np.float32(0.68)), shade * np.float32(0.72), shade)
        shade = np.where(shadow & is_urban, shade * np.float32(0.45), shade)

        rgb = _PAL_LOW[pal] + _PAL_SPAN[pal] * t[..., None]
        rgb *= shade[..., None]
        noise = hash_ints(self.seed, _S_SENSOR, rows[:, None], cols[None, :])
        for ch in range(3):
            byte = ((noise >> np.uint32(8 * ch)) & np.uint32(255)).astype(np.float32)
            rgb[..., ch] += (byte - np.float32(127.5)) * np.float32(3.0 / 127.5)
        np.clip(rgb, 0, 255, out=rgb)
        return np.rint(rgb, out=rgb).astype(np.uint8)


def _palette() -> tuple[np.ndarray, np.ndarray]:
    """Low and high colours of every palette entry: classes, road, roofs, fields."""
    low = [[0, 0, 0], [112, 104, 88], [0, 0, 0], [104, 108, 70], [24, 44, 24], [44, 66, 52], [146, 126, 96]]
    high = [[0, 0, 0], [146, 136, 116], [0, 0, 0], [140, 128, 90], [66, 92, 50], [26, 44, 38], [186, 166, 130]]
    low.append([118, 116, 112])
    high.append([158, 156, 150])
    for colour in _ROOF_COLORS:
        low.append(colour * 0.9)
        high.append(colour * 1.1)
    for colour in _FIELD_COLORS:
        low.append(colour * 0.88)
        high.append(colour * 1.12)
    low_a, high_a = np.array(low, np.float32), np.array(high, np.float32)
    return low_a, high_a - low_a


_PAL_ROAD = 7
_PAL_ROOF = _PAL_ROAD + 1
_PAL_FIELD = _PAL_ROOF + len(_ROOF_COLORS)
_PAL_LOW, _PAL_SPAN = _palette()
