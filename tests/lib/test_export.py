"""Exporting reviewed/corrected label-store regions as DeepGlobe-layout training tiles."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from glnet.classes import DEEPGLOBE
from glnet.data.dataset import read_export
from glnet.errors import GLNetError
from glnet.io.imageio import read_image
from glnet.io.labels import read_label
from glnet.store.export import export_tiles, tile_regions
from glnet.store.labelstore import LabelStore

H, W = 300, 340


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(H, W, 3), dtype=np.uint8)


@pytest.fixture
def store(tmp_path) -> LabelStore:
    s = LabelStore.create(
        tmp_path / "scene.zarr", (H, W), DEEPGLOBE, chunk=128, min_size=64, attrs={"source_image": "/data/scene.tif"}
    )
    labels = np.random.default_rng(1).integers(0, 7, size=(H, W), dtype=np.uint8)
    s.write((0, 0, H, W), labels, edit=False)
    return s


def test_tile_grid_shifts_last_tile_inward():
    assert tile_regions([(0, 0, 250, 100)], 100) == [(0, 0, 100, 100), (100, 0, 200, 100), (150, 0, 250, 100)]
    assert tile_regions([(10, 20, 60, 300)], 100) == [(10, 20, 60, 120), (10, 120, 60, 220), (10, 200, 60, 300)]
    assert tile_regions([(0, 0, 100, 100), (0, 0, 100, 100)], 100) == [(0, 0, 100, 100)]


@pytest.mark.parametrize("mask", ["color", "index"])
def test_round_trip_reviewed(store, image, tmp_path, mask):
    store.mark_reviewed((0, 0, 200, 250))
    store.write((10, 10, 20, 20), np.full((10, 10), 6, np.uint8))  # corrected, inside the reviewed region
    out = tmp_path / f"out_{mask}"
    manifest = export_tiles(store, image, out, tile=128, mask=mask, image_format="png", val_fraction=0.25, seed=1)
    assert manifest["format"] == "napari-glnet-export" and manifest["version"] == 1
    assert manifest["classes"] == DEEPGLOBE.to_list() and manifest["tile"] == 128 and manifest["mask"] == mask
    assert manifest["source_image"] == "/data/scene.tif" and manifest["labels_store"] == str(store.path)
    tiles = manifest["tiles"]
    assert [t["region"] for t in tiles] == [
        [0, 0, 128, 128],
        [0, 122, 128, 250],
        [72, 0, 200, 128],
        [72, 122, 200, 250],
    ]
    assert tiles[0]["id"] == "scene_r0_c0" and tiles[0]["image"] == "scene_r0_c0_sat.png"
    assert tiles[0]["mask"] == "scene_r0_c0_mask.png"
    assert all(t["reviewed"] for t in tiles) and [t["corrected"] for t in tiles] == [True, False, False, False]
    assert [t["split"] for t in tiles].count("val") == 1
    assert json.loads((out / "manifest.json").read_text()) == manifest

    pairs = read_export(out)
    assert [p[2] for p in pairs] == [t["split"] for t in tiles]
    for (img_path, mask_path, _), t in zip(pairs, tiles):
        top, left, bottom, right = t["region"]
        np.testing.assert_array_equal(read_image(img_path), image[top:bottom, left:right])
        np.testing.assert_array_equal(read_label(mask_path, DEEPGLOBE), store.read(t["region"]))
        assert Image.open(mask_path).mode == ("RGB" if mask == "color" else "L")


def test_split_is_deterministic_and_other_selections(store, image, tmp_path):
    a = export_tiles(store, image, tmp_path / "a", tile=64, which="all", seed=5)
    b = export_tiles(store, image, tmp_path / "b", tile=64, which="all", seed=5)
    c = export_tiles(store, image, tmp_path / "c", tile=64, which="all", seed=6)
    splits = [t["split"] for t in a["tiles"]]
    assert splits == [t["split"] for t in b["tiles"]] != [t["split"] for t in c["tiles"]]
    assert len(a["tiles"]) == 5 * 6 and splits.count("val") == 6  # 20% of 30
    assert (tmp_path / "a" / "scene_r0_c0_sat.jpg").is_file()
    store.write((250, 300, 290, 330), np.zeros((40, 30), np.uint8))
    corrected = export_tiles(store, image, tmp_path / "d", which="corrected", val_fraction=0.5)
    assert [t["region"] for t in corrected["tiles"]] == [[250, 300, 290, 330]]  # smaller than a tile
    assert corrected["tiles"][0]["split"] == "train"  # one tile: nothing to hold out


def test_refusals(store, image, tmp_path):
    with pytest.raises(GLNetError, match="no reviewed regions: mark regions reviewed or use --all"):
        export_tiles(store, image, tmp_path / "x")
    with pytest.raises(GLNetError, match="no corrected regions"):
        export_tiles(store, image, tmp_path / "x", which="corrected")
    with pytest.raises(GLNetError, match="340"):
        export_tiles(store, image[:, :100], tmp_path / "x", which="all")
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(GLNetError, match="not empty"):
        export_tiles(store, image, out, which="all", tile=200)
    export_tiles(store, image, out, which="all", tile=200, overwrite=True)
    assert (out / "keep.txt").read_text() == "mine" and len(read_export(out)) == 4


def test_read_export_plain_deepglobe_and_bad_manifest(tmp_path):
    d = tmp_path / "dg"
    d.mkdir()
    for i in (1, 2):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(d / f"{i}_sat.jpg")
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(d / f"{i}_mask.png")
    assert [(p[0].name, p[1].name, p[2]) for p in read_export(d)] == [
        ("1_sat.jpg", "1_mask.png", "train"),
        ("2_sat.jpg", "2_mask.png", "train"),
    ]
    (d / "2_mask.png").unlink()
    with pytest.raises(GLNetError, match="no mask 2_mask.png"):
        read_export(d)
    (d / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(GLNetError, match="not a napari-glnet-export manifest"):
        read_export(d)
    (d / "manifest.json").write_text(
        json.dumps(
            {
                "format": "napari-glnet-export",
                "version": 1,
                "tiles": [{"image": "1_sat.jpg", "mask": "gone.png", "split": "train"}],
            }
        )
    )
    with pytest.raises(GLNetError, match="gone.png is missing"):
        read_export(d)


def test_cli_end_to_end(store, image, tmp_path, capsys):
    from glnet.cli import main

    store.mark_reviewed((0, 0, 100, 150))
    png = tmp_path / "scene.png"
    Image.fromarray(image).save(png)
    out = tmp_path / "cli_out"
    args = ["export", str(store.path), "--image", str(png), "-o", str(out), "--tile", "64", "--png", "--index-masks"]
    assert main(args) == 0
    assert "wrote 6 tiles (1 val)" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source_image"] == str(png) and manifest["mask"] == "index"
    img_path, mask_path, _ = read_export(out)[0]
    assert img_path.name == "scene_r0_c0_sat.png"
    np.testing.assert_array_equal(read_image(img_path), image[:64, :64])
    np.testing.assert_array_equal(read_label(mask_path), store.read((0, 0, 64, 64)))
    assert main(args) == 2  # not empty now
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--corrected"]) == 2
    assert "no corrected regions" in capsys.readouterr().err


def test_the_plan_says_what_is_held_out_and_which_tile_size_holds_one_out(tmp_path):
    from glnet.store.export import export_plan, holdout_tile

    store = LabelStore.create(tmp_path / "s.zarr", (1200, 1200), DEEPGLOBE, chunk=256, min_size=128)
    store.mark_reviewed((0, 0, 1000, 1000))
    assert [split for _, split in export_plan(store, tile=1024)] == ["train"]  # one tile: nothing held out
    assert holdout_tile(store, tile=1024) == 512
    plan = export_plan(store, tile=512)
    assert len(plan) == 4 and [s for _, s in plan].count("val") == 1
    store.mark_reviewed((0, 0, 100, 100))
    assert holdout_tile(store, tile=1024, smallest=2048) is None
