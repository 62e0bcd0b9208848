"""The CLI against a corpus of hostile inputs the project makes itself
(helpers.hostile): decompression bombs, headers that lie, thin strips,
truncated files, a malicious pickle, crafted checkpoints, wrong options,
outputs over or inside inputs, full and read-only disks.

For every case the command either fails with exit status 2 and exactly one
line on stderr, writing nothing, or gives the correct output; and every file
that existed before is byte-identical afterwards."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from glnet import faults
from glnet.classes import DEEPGLOBE
from glnet.cli import main
from glnet.inference.stream import segment_to_store
from glnet.io.labels import write_label
from glnet.io.pyramid import write_ome_zarr
from glnet.store.labelstore import LabelStore

from helpers import hostile as H

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("corpus")
    ckpt = H.small_checkpoint(d / "tiny.glnet.pt")
    image = H.rgb_png(d / "image.png", 120, 160)
    H.png_bomb(d / "bomb.png")
    H.single_strip_tiff(d / "strip.tif")
    H.lying_tiff(d / "liar_huge.tif", 50000, 50000)
    H.lying_tiff(d / "liar.tif", 2000, 1500)
    tifffile.imwrite(d / "tiled.tif", np.zeros((300, 300, 3), np.uint8), photometric="rgb", tile=(128, 128))
    H.truncated(d / "tiled.tif", d / "truncated.tif", 0.6)
    H.truncated(image, d / "truncated.png")
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(d / "photo.jpg")
    H.truncated(d / "photo.jpg", d / "truncated.jpg", 0.3)
    H.rgb_png(d / "row.png", 1, 200)
    H.rgb_png(d / "column.png", 200, 1)
    H.rgb_png(d / "three_rows.png", 3, 150)
    H.zarr_bomb(d / "bomb.zarr")
    write_ome_zarr(np.zeros((100, 140, 3), np.uint8), d / "image.ome.zarr", chunk=64)
    (d / "text.png").write_text("not an image")
    (d / "empty.tif").write_bytes(b"")
    H.malicious_checkpoint(d / "evil.pt", d / "PWNED")
    H.crafted_checkpoint(ckpt, d / "crafted.pt", size_p="abc")
    H.crafted_checkpoint(ckpt, d / "crafted_input.pt", input={"mean": "x", "std": [0, 0, 0]})
    H.nan_checkpoint(ckpt, d / "nan.pt")
    H.truncated(ckpt, d / "truncated.pt")
    red = np.zeros((40, 50, 3), np.uint8)
    red[..., 0] = 255  # no DeepGlobe class is red
    Image.fromarray(red).save(d / "red_mask.png")
    write_label(d / "pred.png", np.ones((40, 50), np.uint8))
    os.symlink(d / "image.png", d / "link_to_image.png")
    with LabelStore.create(d / "labels.zarr", (120, 160), DEEPGLOBE, chunk=64) as store:
        store.mark_reviewed((0, 0, 64, 64))
    (d / "data").mkdir()
    return d


def run(argv: list, capsys, d: Path | None = None, o: Path | None = None) -> tuple[int, list[str]]:
    """Exit status and stderr lines of ``glnet ARGV`` ({d}, {o}: the corpus and output folders)."""
    try:
        code = main([str(a).format(d=d, o=o) for a in argv])
    except SystemExit as e:  # argparse
        code = e.code
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return code, err


SEGMENT = ["segment", "{d}/image.png", "--weights", "{d}/tiny.glnet.pt", "--device", "cpu"]
MODEL = ["--weights", "{d}/tiny.glnet.pt", "--device", "cpu"]

# (case, argv, what the one error line says)
FAILURES = [
    # the result's size is checked from the header, before anything is decoded or converted
    ("png bomb", ["segment", "{d}/bomb.png", "-o", "{o}/a.png", *MODEL], "the class scores of a 8000 x 8000 px"),
    ("single-strip tiff", ["segment", "{d}/strip.tif", "-o", "{o}/a.png", *MODEL], "the class scores of a 4000"),
    # read by regions, one strip would be decoded again for every region: decoded once, so within the budget
    ("single-strip tiff convert", ["convert", "{d}/strip.tif", "-o", "{o}/a.ome.zarr"], "(stored as one strip)"),
    (
        "lying tiff, huge",
        ["segment", "{d}/liar_huge.tif", "-o", "{o}/a.png", *MODEL, "--region", "0,0,64,64"],
        "one TIFF strip or tile",
    ),
    ("lying tiff", ["convert", "{d}/liar.tif", "-o", "{o}/a.ome.zarr"], "a header that lies"),
    ("truncated tiff", ["segment", "{d}/truncated.tif", "-o", "{o}/a.png", *MODEL], "truncated TIFF"),
    ("truncated png", ["segment", "{d}/truncated.png", "-o", "{o}/a.png", *MODEL], "truncated"),
    ("truncated jpeg", ["convert", "{d}/truncated.jpg", "-o", "{o}/a.ome.zarr"], "truncated"),
    ("zarr bomb", ["segment", "{d}/bomb.zarr", "-o", "{o}/a.png", *MODEL], "one zarr chunk"),
    ("png bomb convert", ["convert", "{d}/bomb.png", "-o", "{o}/a.ome.zarr"], "vips tiffsave"),
    ("png bomb as mask", ["evaluate", "--pred", "{d}/bomb.png", "--gt", "{d}/bomb.png"], "the 8000 x 8000 px mask"),
    ("text as png", ["segment", "{d}/text.png", "-o", "{o}/a.png", *MODEL], "not a readable JPEG/PNG"),
    ("empty tiff", ["segment", "{d}/empty.tif", "-o", "{o}/a.png", *MODEL], "not a readable TIFF"),
    ("malicious pickle", [*SEGMENT[:2], "-o", "{o}/a.png", "--weights", "{d}/evil.pt"], "evil.pt"),
    ("size_p 'abc'", [*SEGMENT[:2], "-o", "{o}/a.png", "--weights", "{d}/crafted.pt"], "'size_p' must be"),
    ("bad input scaling", [*SEGMENT[:2], "-o", "{o}/a.png", "--weights", "{d}/crafted_input.pt"], "input.mean"),
    ("nan weights", [*SEGMENT[:2], "-o", "{o}/a.png", "--weights", "{d}/nan.pt"], "NaN"),
    ("truncated checkpoint", [*SEGMENT[:2], "-o", "{o}/a.png", "--weights", "{d}/truncated.pt"], "truncated"),
    ("all colours unknown", ["evaluate", "--pred", "{d}/pred.png", "--gt", "{d}/red_mask.png"], "no colour of"),
    # outputs over or inside inputs
    ("output is input", [*SEGMENT, "-o", "{d}/image.png", "--overwrite"], "is the input image"),
    ("output via symlink", [*SEGMENT, "-o", "{d}/link_to_image.png", "--overwrite"], "is the input image"),
    ("logits are input", [*SEGMENT, "-o", "{o}/a.png", "--logits", "{d}/image.png"], "is the input image"),
    (
        "zarr over its input",
        [*SEGMENT[:1], "{d}/image.ome.zarr", *SEGMENT[2:], "-o", "{d}/image.ome.zarr", "--overwrite"],
        "is the input image",
    ),
    (
        "zarr inside its input",
        [*SEGMENT[:1], "{d}/image.ome.zarr", *SEGMENT[2:], "-o", "{d}/image.ome.zarr/l.zarr"],
        "is inside the input",
    ),
    (
        "output over checkpoint",
        [*SEGMENT, "-o", "{d}/tiny.glnet.pt.png", "--logits", "{d}/tiny.glnet.pt"],
        "checkpoint",
    ),
    (
        "convert onto input",
        ["convert", "{d}/image.ome.zarr", "-o", "{d}/image.ome.zarr", "--overwrite"],
        "is the input",
    ),
    ("convert into input", ["convert", "{d}/image.ome.zarr", "-o", "{d}/image.ome.zarr/0/x.ome.zarr"], "inside the"),
    ("convert over a folder holding it", ["convert", "{d}/image.png", "-o", "{d}", "--overwrite"], "contains the"),
    ("train into its data", ["train", "--data", "{d}/data", "--mode", "global", "-o", "{d}/data/g.pt"], "inside"),
    (
        "train over --from",
        ["train", "--data", "{d}/data", "--mode", "global", "--from", "{d}/tiny.glnet.pt", "-o", "{d}/tiny.glnet.pt"],
        "is the --from",
    ),
    (
        "finetune into its data",
        ["finetune", "--from", "{d}/tiny.glnet.pt", "--data", "{d}/data", "-o", "{d}/data/t.pt"],
        "inside",
    ),
    (
        "export into the store",
        ["export", "{d}/labels.zarr", "--image", "{d}/image.png", "-o", "{d}/labels.zarr/t"],
        "inside the label store",
    ),
    (
        "export over their folder",
        ["export", "{d}/labels.zarr", "--image", "{d}/image.png", "-o", "{d}", "--overwrite"],
        "contains the label store",
    ),
    ("output exists", [*SEGMENT, "-o", "{d}/pred.png"], "--overwrite"),
    ("output in /proc", [*SEGMENT, "-o", "/proc/glnet.png"], "cannot write in /proc"),
    # wrong numbers fail at once
    ("--workers -1", [*SEGMENT, "-o", "{o}/a.zarr", "--workers", "-1"], "--workers: must be between 0"),
    ("--size-p 100000", [*SEGMENT, "-o", "{o}/a.png", "--size-p", "100000"], "--size-p: must be between 32"),
    ("--threads 0", [*SEGMENT, "-o", "{o}/a.png", "--threads", "0"], "--threads"),
    ("--batch-size 0", [*SEGMENT, "-o", "{o}/a.png", "--batch-size", "0"], "--batch-size"),
    ("--overlap -5", [*SEGMENT, "-o", "{o}/a.zarr", "--overlap", "-5"], "--overlap"),
    ("--scene-size 10", [*SEGMENT, "-o", "{o}/a.zarr", "--scene-size", "10"], "--scene-size"),
    ("--ctf-margin -1", [*SEGMENT, "-o", "{o}/a.png", "--coarse-to-fine", "--ctf-margin", "-1"], "--ctf-margin"),
    ("--chunk 1", ["convert", "{d}/image.png", "-o", "{o}/a.ome.zarr", "--chunk", "1"], "--chunk"),
    ("--tile 0", ["export", "{d}/x.zarr", "--image", "{d}/image.png", "-o", "{o}/e", "--tile", "0"], "--tile"),
    (
        "--val-fraction 1.5",
        ["train", "--data", "{d}/data", "--mode", "global", "-o", "{o}/g.pt", "--val-fraction", "1.5"],
        "--val-fraction",
    ),
    (
        "--lr nan",
        ["finetune", "--from", "{d}/tiny.glnet.pt", "--data", "{d}/data", "-o", "{o}/t.pt", "--lr", "nan"],
        "--lr",
    ),
    ("--seed -1", ["train", "--data", "{d}/data", "--mode", "global", "-o", "{o}/g.pt", "--seed", "-1"], "--seed"),
    ("--exclude abc", ["evaluate", "--pred", "{d}/pred.png", "--gt", "{d}/pred.png", "--exclude", "abc"], "--exclude"),
    ("--exclude 9", ["evaluate", "--pred", "{d}/pred.png", "--gt", "{d}/pred.png", "--exclude", "9"], "--exclude 9"),
    ("scheduler refused", [*SEGMENT, "-o", "{o}/a.zarr", "--scheduler", "tcp://127.0.0.1:1"], "cannot reach"),
    ("scheduler nonsense", [*SEGMENT, "-o", "{o}/a.zarr", "--scheduler", "nonsense"], "not a dask scheduler"),
]


@pytest.mark.parametrize("case, argv, expected", FAILURES, ids=[c[0] for c in FAILURES])
def test_a_hostile_case_is_one_line_exit_2_and_writes_nothing(
    corpus, tmp_path, monkeypatch, capsys, case, argv, expected
):
    monkeypatch.setenv("GLNET_DECODE_BUDGET", H.BUDGET)
    monkeypatch.setenv("GLNET_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out"
    out.mkdir()
    before = H.snapshot(corpus)
    code, err = run(argv, capsys, corpus, out)
    assert code == 2 and len(err) == 1 and err[0].startswith("glnet: error: "), (code, err)
    assert expected in err[0], err[0]
    assert H.snapshot(corpus) == before, "a file of the corpus changed"
    assert not list(out.iterdir()), f"a failed command left {list(out.iterdir())}"
    assert not (corpus / "PWNED").exists()


@pytest.mark.slow  # runs the model on three images
def test_thin_strips_keep_their_shape(corpus, tmp_path, capsys):
    """PIL knows the layout: a 1 x 200 RGB image is never taken for 3 channels of 200 rows."""
    from glnet.io.labels import read_label

    before = H.snapshot(corpus)
    for name, shape in (("row", (1, 200)), ("column", (200, 1)), ("three_rows", (3, 150))):
        code, err = run(
            [
                "segment",
                corpus / f"{name}.png",
                "-o",
                tmp_path / f"{name}.png",
                *MODEL[:1],
                corpus / "tiny.glnet.pt",
                "--device",
                "cpu",
            ],
            capsys,
        )
        assert code == 0, err
        assert read_label(tmp_path / f"{name}.png").shape == shape
    assert H.snapshot(corpus) == before


def test_off_palette_pixels_are_counted_in_total(corpus, tmp_path, capsys, caplog):
    mask = np.zeros((40, 50, 3), np.uint8)
    mask[:10, :] = (255, 0, 0)  # 500 red pixels: no DeepGlobe class
    for i in range(3):
        Image.fromarray(mask).save(tmp_path / f"{i}_mask.png")
        write_label(tmp_path / f"{i}_pred.png", np.zeros((40, 50), np.uint8))
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    for i in range(3):
        (tmp_path / f"{i}_mask.png").rename(tmp_path / "gt" / f"{i}_mask.png")
        (tmp_path / f"{i}_pred.png").rename(tmp_path / "pred" / f"{i}_pred.png")
    with caplog.at_level("WARNING"):
        code, err = run(["evaluate", "--pred", tmp_path / "pred", "--gt", tmp_path / "gt"], capsys)
    assert code == 0, err
    assert "1500 of 6000 pixels (25.00%) in 3 mask(s) have colours not in the class table" in caplog.text


# -- full and read-only disks ---------------------------------------------------------------
def _mount(target: Path, options: str) -> bool:
    """A small tmpfs at ``target`` (root only); False where mounting is not allowed."""
    target.mkdir()
    if os.geteuid() != 0:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True, check=False
    )
    return done.returncode == 0


def _tmpfs_or_faults(target: Path, options: str):
    """``target`` mounted with ``options`` where root allows; faults are disarmed after."""
    mounted = _mount(target, options)
    yield target, mounted
    faults.disarm()
    if mounted:
        subprocess.run(["umount", str(target)], check=False)


@pytest.fixture
def full_disk(tmp_path):
    """A folder on a 96 KB file system, or, where mounting is not allowed, a
    folder whose writes fail with ENOSPC by fault injection."""
    yield from _tmpfs_or_faults(tmp_path / "full", "size=96k")


@pytest.fixture
def read_only(tmp_path):
    yield from _tmpfs_or_faults(tmp_path / "ro", "ro,size=64k")


def test_a_full_disk_leaves_no_half_result(corpus, full_disk, monkeypatch, capsys):
    """The mask fits, the class scores do not: neither is left (--logits used
    to fail after the PNG was written)."""
    target, mounted = full_disk
    big = H.rgb_png(target.parent / "big.png", 60, 100)  # its mask fits in 96 KB, its logits (120 KB) do not
    if not mounted:
        faults.stop_at(1, "ENOSPC", match=".npy")
    code, err = run(
        [*SEGMENT[:1], big, *SEGMENT[2:], "-o", target / "a.png", "--logits", target / "a.npy"], capsys, corpus
    )
    assert code == 2 and len(err) == 1 and ("disk is full" in err[0] or "is the disk full" in err[0]), err
    assert "no output was written" in err[0]
    assert sorted(p.name for p in target.iterdir()) == []


@pytest.mark.slow  # runs the model three times
def test_a_full_disk_while_streaming_leaves_an_incomplete_store_that_resumes(corpus, full_disk, tmp_path, capsys):
    """The disk fills up mid-run: one line that says how to finish, a store
    marked incomplete, and after making room ``--resume`` gives the result."""
    target, mounted = full_disk
    argv = [*SEGMENT, "-o", target / "s.zarr", "--scene-size", "96", "--overlap", "16"]
    if mounted:
        subprocess.run(["mount", "-o", "remount,size=40k", str(target)], check=True)
    else:
        faults.stop_at(2, "ENOSPC", match="scene-")
    code, err = run(argv, capsys, corpus)
    assert code == 2 and len(err) == 1 and "the label store is incomplete" in err[0] and "--resume" in err[0], err
    faults.disarm()
    if mounted:
        subprocess.run(["mount", "-o", "remount,size=4m", str(target)], check=True)
    assert run([*argv, "--resume"], capsys, corpus)[0] == 0
    from glnet.store.labelstore import LabelStore

    store = LabelStore.open(target / "s.zarr", mode="r")
    assert store.completion.complete
    np.testing.assert_array_equal(store.read(), segment_to_store_reference(corpus, tmp_path))


def segment_to_store_reference(corpus: Path, tmp_path: Path) -> np.ndarray:
    from glnet.inference.stream import ModelSpec

    spec = ModelSpec(weights=str(corpus / "tiny.glnet.pt"), device="cpu")
    store = segment_to_store(spec, corpus / "image.png", tmp_path / "ref.zarr", scene_size=96, overlap=16)
    labels = store.read()
    store.close()
    return labels


def test_a_read_only_target_fails_before_any_work(corpus, read_only, capsys):
    target, mounted = read_only
    if not mounted:
        pytest.skip("needs root to mount a read-only file system (the probe write is what fails there)")
    for argv in (
        [*SEGMENT, "-o", target / "a.png"],
        [*SEGMENT, "-o", target / "a.zarr"],
        ["convert", corpus / "image.png", "-o", target / "a.ome.zarr"],
    ):
        code, err = run(argv, capsys, corpus)
        assert code == 2 and len(err) == 1 and "read-only" in err[0], err
