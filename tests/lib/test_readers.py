"""Lazy pyramid readers (glnet.io.readers) and the OME-Zarr writer (glnet.io.pyramid)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from glnet.cli import main
from glnet.errors import GLNetError
from glnet.geometry import level_shapes
from glnet.io.pyramid import halve, write_ome_zarr
from glnet.io.readers import cache_path, open_image


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _ome_reader_nodes(path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    return [n for n in Reader(parse_url(str(path)))() if any(isinstance(s, Multiscales) for s in n.specs)]


# -- helpers shared by writer and readers ----------------------------------------
def test_halve_is_rounded_area_mean_and_rounds_sizes_up():
    a = np.array([[0, 1, 255], [2, 3, 255], [10, 10, 7]], np.uint8)[:, :, None]
    h = halve(a)
    assert h.shape == (2, 2, 1)
    assert h[0, 0, 0] == 2  # (0+1+2+3)/4 = 1.5 -> 2
    assert h[0, 1, 0] == 255 and h[1, 0, 0] == 10 and h[1, 1, 0] == 7  # edges averaged with themselves
    assert level_shapes((2448, 2448)) == [(2448, 2448), (1224, 1224), (612, 612), (306, 306)]
    assert level_shapes((100, 300)) == [(100, 300)]


# -- JPEG ------------------------------------------------------------------------
def test_real_jpeg_lazy_levels(real_image_path):
    pyr = open_image(real_image_path)
    assert pyr.shape == (2448, 2448) and pyr.source == str(real_image_path)
    assert [lv.shape for lv in pyr.levels] == [(2448, 2448, 3), (1224, 1224, 3), (612, 612, 3), (306, 306, 3)]
    assert all(lv.dtype == np.uint8 for lv in pyr.levels)
    with Image.open(real_image_path) as im:
        expected = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(pyr.levels[0].compute(), expected)
    np.testing.assert_array_equal(pyr.levels[1].compute(), halve(expected))
    assert pyr.pixel_size is None


def test_big_jpeg_is_converted_once_into_the_cache(real_image_path, tmp_path):
    calls = []
    pyr = open_image(real_image_path, cache_dir=tmp_path, flat_limit=1000, progress=lambda d, t: calls.append((d, t)))
    store = cache_path(real_image_path, tmp_path)
    assert store.is_dir() and store.parent == tmp_path
    assert calls and calls[-1][0] == calls[-1][1]
    assert [lv.shape for lv in pyr.levels] == [(2448, 2448, 3), (1224, 1224, 3), (612, 612, 3), (306, 306, 3)]
    flat = open_image(real_image_path)
    np.testing.assert_array_equal(
        pyr.levels[0][1000:1100, 2000:2448].compute(), flat.levels[0][1000:1100, 2000:].compute()
    )
    np.testing.assert_array_equal(pyr.levels[2].compute(), flat.levels[2].compute())  # lazy == written pyramid
    mtimes = {p: p.stat().st_mtime_ns for p in store.rglob("*")}
    again = []
    pyr2 = open_image(real_image_path, cache_dir=tmp_path, flat_limit=1000, progress=lambda d, t: again.append(d))
    assert again == [] and pyr2.shape == (2448, 2448)
    assert {p: p.stat().st_mtime_ns for p in store.rglob("*")} == mtimes
    assert sorted(p.name for p in tmp_path.iterdir()) == [store.name]  # no partial stores left


# -- TIFF ------------------------------------------------------------------------
def test_pyramidal_tiled_tiff(tmp_path):
    data = _rgb(1500, 1100)
    path = tmp_path / "pyr.tif"
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        opts = {"tile": (256, 256), "compression": "zlib", "photometric": "rgb"}
        tw.write(data, subifds=2, resolution=(2.0, 4.0), resolutionunit="CENTIMETER", **opts)
        tw.write(data[::2, ::2], subfiletype=1, **opts)
        tw.write(data[::4, ::4], subfiletype=1, **opts)
    pyr = open_image(path)
    assert [lv.shape[:2] for lv in pyr.levels] == [(1500, 1100), (750, 550), (375, 275)]
    assert type(pyr.levels[0]).__name__ == "Array" and pyr.levels[0].npartitions > 1  # dask, read by region
    np.testing.assert_array_equal(pyr.levels[0][300:700, 500:900].compute(), data[300:700, 500:900])
    np.testing.assert_array_equal(pyr.levels[2].compute(), data[::4, ::4])
    assert pyr.pixel_size == pytest.approx((2500.0, 5000.0)) and pyr.unit == "micrometer"  # 4/cm in y, 2/cm in x
    pyr.close()


def test_ome_tiff_levels_pixel_size_and_lazy_extra_levels(tmp_path):
    data = _rgb(2100, 1300, 7)
    path = tmp_path / "scene.ome.tif"
    with tifffile.TiffWriter(path, bigtiff=True, ome=True) as tw:
        md = {"axes": "YXS", "PhysicalSizeX": 0.3, "PhysicalSizeY": 0.4, "PhysicalSizeXUnit": "µm"}
        tw.write(data, subifds=1, tile=(256, 256), photometric="rgb", metadata=md)
        tw.write(data[::2, ::2], subfiletype=1, tile=(256, 256), photometric="rgb")
    pyr = open_image(path)
    assert pyr.pixel_size == pytest.approx((0.4, 0.3)) and pyr.unit == "micrometer"
    # two stored levels, then lazy halving of the smallest until it fits a screen
    assert [lv.shape[:2] for lv in pyr.levels] == [(2100, 1300), (1050, 650), (525, 325), (263, 163)]
    np.testing.assert_array_equal(pyr.levels[1].compute(), data[::2, ::2])
    np.testing.assert_array_equal(pyr.levels[2].compute(), halve(data[::2, ::2]))
    pyr.close()


def test_flat_tiff_levels_are_lazy_and_big_one_is_cached(tmp_path):
    data = _rgb(1200, 1000, 1)
    path = tmp_path / "flat.tif"
    tifffile.imwrite(path, data, photometric="rgb", compression="zlib", rowsperstrip=16)
    pyr = open_image(path)
    assert [lv.shape[:2] for lv in pyr.levels] == [(1200, 1000), (600, 500), (300, 250)]
    np.testing.assert_array_equal(pyr.levels[1].compute(), halve(data))
    cached = open_image(path, cache_dir=tmp_path / "cache", flat_limit=10_000)
    assert cache_path(path, tmp_path / "cache").is_dir()
    np.testing.assert_array_equal(cached.levels[1].compute(), halve(data))


@pytest.mark.parametrize(
    "make, expected",
    [
        ("rgba", lambda d: d[:, :, :3]),
        ("grey", lambda d: np.repeat(d[:, :, :1], 3, axis=2)),
        ("uint16", lambda d: d[:, :, :3]),
        ("chw", lambda d: d[:, :, :3]),
        ("float", lambda d: d[:, :, :3]),
    ],
)
def test_pixel_formats_are_normalised(tmp_path, make, expected):
    d = _rgb(120, 90, 2)
    d = np.concatenate([d, d[:, :, :1]], axis=2)  # 4 channels to draw from
    path = tmp_path / f"{make}.tif"
    if make == "rgba":
        tifffile.imwrite(path, d, photometric="rgb", extrasamples=["unassalpha"])
    elif make == "grey":
        tifffile.imwrite(path, d[:, :, 0], photometric="minisblack")
    elif make == "uint16":
        v16 = np.minimum(d[:, :, :3].astype(np.uint32) * 257 + 200, 65535).astype(np.uint16)
        tifffile.imwrite(path, v16, photometric="rgb")  # // 257 undoes it
    elif make == "chw":
        tifffile.imwrite(path, np.ascontiguousarray(np.moveaxis(d[:, :, :3], -1, 0)), photometric="minisblack")
    else:
        tifffile.imwrite(path, d[:, :, :3].astype(np.float32) / 255, photometric="rgb")
    pyr = open_image(path)
    np.testing.assert_array_equal(pyr.levels[0].compute(), expected(d))


def test_uint16_rule_is_value_div_257(tmp_path):
    v = np.array([[0, 256, 257, 32896, 65534, 65535]], np.uint16).repeat(8, 0)
    path = tmp_path / "g16.tif"
    tifffile.imwrite(path, v)
    got = open_image(path).levels[0].compute()[0, :, 0]
    assert got.tolist() == [0, 0, 1, 128, 254, 255]


# -- OME-Zarr ----------------------------------------------------------------------
def test_ome_zarr_from_ome_zarr_py_has_right_orientation(tmp_path):
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image

    data = _rgb(700, 500, 3)
    for fmt in (FormatV05(), FormatV04()):
        out = tmp_path / f"theirs{fmt.version}.ome.zarr"
        write_image(np.moveaxis(data, -1, 0), str(out), axes="cyx", scale_factors=(2,), fmt=fmt)
        pyr = open_image(out)
        assert [lv.shape for lv in pyr.levels] == [(700, 500, 3), (350, 250, 3)]
        np.testing.assert_array_equal(pyr.levels[0].compute(), data)
        assert pyr.pixel_size is None
    tczyx = tmp_path / "tczyx.ome.zarr"
    write_image(np.moveaxis(data, -1, 0)[None, :, None], str(tczyx), axes="tczyx", scale_factors=())
    np.testing.assert_array_equal(open_image(tczyx).levels[0].compute(), data)


def test_write_ome_zarr_validates_with_ome_zarr_reader(tmp_path):
    data = _rgb(1100, 700, 4)
    calls = []
    out = write_ome_zarr(
        data,
        tmp_path / "ours.ome.zarr",
        chunk=256,
        overview=200,
        pixel_size=(0.5, 0.25),
        unit="meter",
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls[-1] == (calls[-1][1], calls[-1][1]) and len(calls) > 5
    nodes = _ome_reader_nodes(out)
    assert len(nodes) == 1
    assert [d.shape for d in nodes[0].data] == [(3, 1100, 700), (3, 550, 350), (3, 275, 175), (3, 138, 88)]
    assert [a["name"] for a in nodes[0].metadata["axes"]] == ["c", "y", "x"]
    np.testing.assert_array_equal(np.asarray(nodes[0].data[0]), np.moveaxis(data, -1, 0))
    np.testing.assert_array_equal(np.asarray(nodes[0].data[2]), np.moveaxis(halve(halve(data)), -1, 0))
    pyr = open_image(out)
    assert pyr.pixel_size == (0.5, 0.25) and pyr.unit == "meter"
    np.testing.assert_array_equal(pyr.levels[0].compute(), data)
    assert not list(tmp_path.glob("*partial*"))
    with pytest.raises(GLNetError, match="exists"):
        write_ome_zarr(data, out)


def test_write_ome_zarr_streams_a_dask_image_and_overwrites(tmp_path):
    import dask.array as da

    data = _rgb(600, 900, 5)
    out = tmp_path / "x.ome.zarr"
    write_ome_zarr(np.zeros((10, 10, 3), np.uint8), out)
    write_ome_zarr(da.from_array(data, chunks=(128, 128, 3)), out, chunk=128, overwrite=True)
    np.testing.assert_array_equal(open_image(out).levels[0].compute(), data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.ome.zarr"]


def test_plain_zarr_array(tmp_path):
    import zarr

    data = _rgb(800, 600, 6)
    z = zarr.create_array(str(tmp_path / "plain.zarr"), shape=(3, 800, 600), chunks=(3, 256, 256), dtype="uint8")
    z[:] = np.moveaxis(data, -1, 0)
    pyr = open_image(tmp_path / "plain.zarr")
    assert [lv.shape for lv in pyr.levels] == [(800, 600, 3), (400, 300, 3)]
    np.testing.assert_array_equal(pyr.levels[0].compute(), data)
    np.testing.assert_array_equal(pyr.levels[1].compute(), halve(data))


# -- errors ----------------------------------------------------------------------
def test_bad_inputs_raise_one_line_glnet_errors(tmp_path):
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, _rgb(400, 400), photometric="rgb", compression="zlib", tile=(128, 128))
    raw = good.read_bytes()
    (tmp_path / "truncated.tif").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "random.tif").write_bytes(np.random.default_rng(0).bytes(5000))
    (tmp_path / "random.jpg").write_bytes(np.random.default_rng(1).bytes(5000))
    (tmp_path / "image.bmpx").write_bytes(b"xx")
    tifffile.imwrite(tmp_path / "five.tif", np.zeros((5, 64, 64), np.uint8))
    tifffile.imwrite(tmp_path / "int32.tif", np.zeros((64, 64), np.int32))
    (tmp_path / "folder").mkdir()
    cases = {
        "truncated.tif": "truncated",
        "random.tif": "TIFF",
        "random.jpg": "JPEG/PNG",
        "missing.tif": "not found",
        "image.bmpx": "unsupported",
        "five.tif": "shape",
        "int32.tif": "int32",
        "folder": "not a zarr",
    }
    for name, words in cases.items():
        with pytest.raises(GLNetError, match=words) as info:
            open_image(tmp_path / name)
        assert "\n" not in str(info.value), name
        assert name in str(info.value), name


# -- glnet convert ------------------------------------------------------------------
def test_glnet_convert_end_to_end(real_image_path, tmp_path, capsys):
    out = tmp_path / "scene.ome.zarr"
    assert main(["convert", str(real_image_path), "-o", str(out), "--chunk", "1024"]) == 0
    assert "wrote" in capsys.readouterr().out
    nodes = _ome_reader_nodes(out)
    assert [d.shape for d in nodes[0].data] == [(3, 2448, 2448), (3, 1224, 1224), (3, 612, 612), (3, 306, 306)]
    assert nodes[0].data[0].chunksize == (3, 1024, 1024)
    with Image.open(real_image_path) as im:
        np.testing.assert_array_equal(
            np.asarray(nodes[0].data[0][:, :300, :300]), np.moveaxis(np.asarray(im)[:300, :300], -1, 0)
        )
    assert main(["convert", str(real_image_path), "-o", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "nope.jpg"), "-o", str(tmp_path / "n.ome.zarr")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["convert", str(out), "-o", str(tmp_path / "copy.ome.zarr"), "--overwrite"]) == 0  # zarr in, too
