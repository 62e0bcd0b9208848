import logging
import time

import numpy as np
import pytest
import tifffile
from PIL import Image

from glnet.classes import DEEPGLOBE, ClassTable
from glnet.errors import GLNetError
from glnet.io.labels import colors_to_index, index_to_colors, read_label, write_label


def sample_index(h: int = 6, w: int = 5, n: int = 7) -> np.ndarray:
    return (np.arange(h * w).reshape(h, w) % n).astype(np.uint8)


def test_index_colors_round_trip_in_memory():
    index = sample_index()
    rgb = index_to_colors(index)
    assert rgb.shape == (6, 5, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 1]) == (0, 255, 255)  # class 1, urban
    np.testing.assert_array_equal(colors_to_index(rgb), index)


def test_noisy_colours_threshold_to_the_nearest_corner():
    rgb = np.array(
        [[[250, 3, 251], [2, 128, 127], [127, 127, 127], [200, 255, 130], [30, 240, 220], [255, 255, 255]]],
        dtype=np.uint8,
    )
    # magenta -> rangeland 3, green -> forest 4, black -> unknown 0,
    # white -> barren 6, cyan -> urban 1, white -> barren 6
    np.testing.assert_array_equal(colors_to_index(rgb), [[3, 4, 0, 6, 1, 6]])


def test_unknown_colours_become_class_zero_with_one_warning(caplog):
    rgb = index_to_colors(sample_index(4, 4))
    rgb[0, :3] = (255, 0, 0)  # red is not a DeepGlobe colour
    with caplog.at_level(logging.WARNING, logger="glnet.io.labels"):
        index = colors_to_index(rgb)
    assert (index[0, :3] == 0).all()
    records = [r for r in caplog.records if r.name == "glnet.io.labels"]
    assert len(records) == 1
    assert "3 of 16 pixels (18.75%)" in records[0].getMessage()


def test_known_colours_do_not_warn(caplog):
    with caplog.at_level(logging.WARNING):
        colors_to_index(index_to_colors(sample_index()))
    assert caplog.records == []


def test_non_binary_table_matches_exact_colours(caplog):
    table = ClassTable.from_list(
        [{"name": "bg", "color": [0, 0, 0]}, {"name": "a", "color": [128, 64, 0]}, {"name": "b", "color": [10, 20, 30]}]
    )
    rgb = np.array([[[10, 20, 30], [128, 64, 0], [128, 64, 1], [0, 0, 0]]], dtype=np.uint8)
    with caplog.at_level(logging.WARNING):
        index = colors_to_index(rgb, table)
    np.testing.assert_array_equal(index, [[2, 1, 0, 0]])  # (128, 64, 1) is unknown
    assert len(caplog.records) == 1


@pytest.mark.parametrize("table", [DEEPGLOBE, ClassTable.default(8)], ids=["thresholded", "exact"])
def test_colors_to_index_is_fast_on_a_deepglobe_sized_mask(table):
    rng = np.random.default_rng(0)
    index = rng.integers(0, len(table), size=(2448, 2448)).astype(np.uint8)
    rgb = table.colors[index]
    start = time.perf_counter()
    decoded = colors_to_index(rgb, table)
    elapsed = time.perf_counter() - start
    np.testing.assert_array_equal(decoded, index)
    assert elapsed < 1.0, f"took {elapsed:.2f}s"


def test_index_to_colors_rejects_values_beyond_the_table():
    index = sample_index()
    index[2, 3] = 9
    with pytest.raises(GLNetError, match="value 9.*7 classes"):
        index_to_colors(index)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".tiff"])
@pytest.mark.parametrize("color", [False, True])
def test_file_round_trip(tmp_path, suffix, color):
    index = sample_index(33, 17)
    path = tmp_path / f"mask{suffix}"
    write_label(path, index, color=color)
    back = read_label(path)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, index)


def test_files_are_index_or_colour_as_asked(tmp_path):
    index = sample_index()
    write_label(tmp_path / "i.png", index)
    write_label(tmp_path / "c.png", index, color=True)
    write_label(tmp_path / "c.tif", index, color=True)
    with Image.open(tmp_path / "i.png") as img:
        assert img.mode == "L"
    with Image.open(tmp_path / "c.png") as img:
        assert img.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(img), index_to_colors(index))
    assert tifffile.imread(tmp_path / "c.tif").shape == (6, 5, 3)


def test_many_classes_use_uint16(tmp_path):
    table = ClassTable.default(300)
    index = (np.arange(400).reshape(20, 20) % 300).astype(np.uint16)
    for name in ("big.png", "big.tif"):
        write_label(tmp_path / name, index, table)
        back = read_label(tmp_path / name, table)
        assert back.dtype == np.uint16
        np.testing.assert_array_equal(back, index)
    write_label(tmp_path / "big_rgb.png", index, table, color=True)
    np.testing.assert_array_equal(read_label(tmp_path / "big_rgb.png", table), index)


def test_noisy_rgba_png_is_decoded(tmp_path):
    rgb = index_to_colors(sample_index()).astype(np.int16)
    rgb = np.clip(rgb + np.where(rgb > 127, -9, 9), 0, 255).astype(np.uint8)  # (246, 9, 246) etc.
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "noisy.png")
    np.testing.assert_array_equal(read_label(tmp_path / "noisy.png"), sample_index())


def test_single_channel_tiff_is_an_index_mask(tmp_path):
    index = sample_index().astype(np.int32)
    index[0, 0] = 255  # an ignore value is kept, not rejected
    tifffile.imwrite(tmp_path / "m.tif", index)
    back = read_label(tmp_path / "m.tif")
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, index)


def test_jpeg_is_refused(tmp_path):
    path = tmp_path / "mask.jpg"
    Image.fromarray(index_to_colors(sample_index())).save(path)
    with pytest.raises(GLNetError, match="JPEG is lossy"):
        read_label(path)
    with pytest.raises(GLNetError, match="JPEG is lossy"):
        write_label(tmp_path / "out.jpeg", sample_index())
    with pytest.raises(GLNetError, match="unsupported"):
        write_label(tmp_path / "out.bmp", sample_index())


def test_missing_file(tmp_path):
    with pytest.raises(GLNetError, match="not found") as info:
        read_label(tmp_path / "nope.png")
    assert "nope.png" in str(info.value)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_corrupt_files_give_one_line_errors(tmp_path, suffix):
    good = tmp_path / f"good{suffix}"
    rng = np.random.default_rng(0)
    write_label(good, rng.integers(0, 7, size=(256, 256)), color=True)  # noise: most bytes are pixel data
    data = good.read_bytes()
    header_only = tmp_path / f"header_only{suffix}"
    header_only.write_bytes(data[:60])
    damaged = tmp_path / f"damaged{suffix}"  # the pixel data is overwritten halfway
    half = len(data) // 2
    damaged.write_bytes(data[:half] + bytes(len(data) - half))
    garbage = tmp_path / f"garbage{suffix}"
    garbage.write_bytes(b"this is not an image at all" * 10)
    for path in (header_only, damaged, garbage):
        with pytest.raises(GLNetError) as info:
            read_label(path)
        message = str(info.value)
        assert str(path) in message and "\n" not in message


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "mask.png"
    write_label(path, sample_index())
    write_label(path, sample_index(8, 8), color=True)  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.png"]
    np.testing.assert_array_equal(read_label(path), sample_index(8, 8))

    # A failed write (value beyond the table) keeps the old file and leaves no debris.
    bad = sample_index()
    bad[0, 0] = 42
    with pytest.raises(GLNetError, match="42"):
        write_label(path, bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.png"]
    np.testing.assert_array_equal(read_label(path), sample_index(8, 8))


def test_write_into_a_missing_folder(tmp_path):
    with pytest.raises(GLNetError, match="does not exist"):
        write_label(tmp_path / "no" / "such" / "mask.png", sample_index())
