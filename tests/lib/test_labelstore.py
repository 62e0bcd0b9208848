"""The OME-Zarr label store: levels, edits, undo, review marks, crash safety."""

from __future__ import annotations

import numpy as np
import pytest

from glnet.classes import DEEPGLOBE, ClassTable
from glnet.errors import GLNetError
from glnet.geometry import level_region, level_shapes
from glnet.store.labelstore import LabelStore


def mode_downsample_reference(a: np.ndarray) -> np.ndarray:
    """2x2 mode by brute force over the real (unpadded) block pixels; ties -> smallest."""
    h, w = a.shape
    out = np.zeros(((h + 1) // 2, (w + 1) // 2), a.dtype)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            block = a[2 * i : 2 * i + 2, 2 * j : 2 * j + 2].ravel()
            out[i, j] = np.argmax(np.bincount(block))  # argmax returns the first (smallest) maximum
    return out


def blocky_labels(shape, seed=0, n=7, cell=4):
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, n, size=(-(-shape[0] // cell), -(-shape[1] // cell)), dtype=np.uint8)
    noise = rng.integers(0, n, size=shape, dtype=np.uint8)
    a = np.repeat(np.repeat(coarse, cell, 0), cell, 1)[: shape[0], : shape[1]]
    return np.where(rng.random(shape) < 0.3, noise, a)


@pytest.fixture
def store(tmp_path) -> LabelStore:
    return LabelStore.create(tmp_path / "s.zarr", (300, 250), DEEPGLOBE, chunk=64, min_size=32)


def test_create_open_round_trip(tmp_path):
    table = ClassTable.from_list([{"name": "bg", "color": [0, 0, 0]}, {"name": "road", "color": [200, 10, 10]}])
    s = LabelStore.create(
        tmp_path / "a.zarr", (1000, 700), table, chunk=128, min_size=100, attrs={"source_image": "x.tif"}
    )
    assert [lv.shape for lv in s.levels] == [(1000, 700), (500, 350), (250, 175), (125, 88)]
    assert s.levels[0].dtype == np.uint8 and s.levels[0].chunks == (128, 128)
    assert s.read().shape == (1000, 700) and not s.read().any()  # empty store reads as class 0
    o = LabelStore.open(tmp_path / "a.zarr")
    assert (o.name, o.shape, o.chunk, o.classes) == ("glnet", (1000, 700), 128, table)
    assert o.attrs == {"source_image": "x.tif"}
    o.update_attrs(scenes_done=[1, 2])
    assert LabelStore.open(tmp_path / "a.zarr", "glnet", mode="r").attrs == {
        "source_image": "x.tif",
        "scenes_done": [1, 2],
    }
    assert level_shapes((20000, 20000), 512)[-1] == (313, 313)
    assert len(level_shapes((10, 10), 512)) == 1


def test_a_write_commits_attrs_with_its_labels(store):
    """What a writer records about its writes (the plugin's refined tiles) is
    saved by the write's own state write, and also when no pixel changes."""
    labels = np.full((64, 64), 3, np.uint8)
    assert store.write((0, 0, 64, 64), labels, edit=False, attrs={"refined": [[0, 0, 64, 64]]}) is None
    assert store.attrs["refined"] == [[0, 0, 64, 64]] and store.edit_log() == []
    assert store.write((0, 0, 64, 64), labels, edit=False, attrs={"refined": []}) is None  # nothing changes
    assert store.attrs["refined"] == []
    entry = store.write((0, 0, 8, 8), np.ones((8, 8), np.uint8), attrs={"note": "x"})
    assert entry is not None and store.attrs["note"] == "x" and len(store.edit_log()) == 1
    store.undo()
    assert store.attrs["note"] == "x"  # undo takes back labels, not attrs
    with pytest.raises(GLNetError, match="JSON-serialisable"):
        store.write((0, 0, 8, 8), np.ones((8, 8), np.uint8), edit=False, attrs={"bad": object()})
    assert store.read((0, 0, 8, 8)).tolist() == labels[:8, :8].tolist()  # refused before writing


def test_many_classes_use_uint16(tmp_path):
    s = LabelStore.create(tmp_path / "b.zarr", (40, 40), ClassTable.default(300), min_size=8)
    assert s.levels[0].dtype == np.uint16
    s.write((0, 0, 2, 2), np.full((2, 2), 299, np.uint16))
    assert s.read((0, 0, 2, 2)).max() == 299


def test_write_read_levels_match_mode_downsampling(store):
    full = blocky_labels(store.shape, seed=1)
    store.write((0, 0, *store.shape), full, edit=False)
    patch = blocky_labels((77, 91), seed=2)
    store.write((33, 41, 110, 132), patch)
    expect = full.copy()
    expect[33:110, 41:132] = patch
    np.testing.assert_array_equal(store.read(), expect)
    np.testing.assert_array_equal(store.read((33, 41, 110, 132)), patch)
    level = expect
    for k in range(1, len(store.levels)):
        level = mode_downsample_reference(level)  # independent of the store's own code
        np.testing.assert_array_equal(store.read(level=k), level, err_msg=f"level {k}")
    np.testing.assert_array_equal(
        store.read((33, 41, 110, 132), level=2), level_ref_crop(expect, 2, (33, 41, 110, 132))
    )


def level_ref_crop(level0, k, region):
    a = level0
    for _ in range(k):
        a = mode_downsample_reference(a)
    t, l, b, r = level_region(region, k)
    return a[t:b, l:r]


def chunk_files(store: LabelStore) -> dict[str, bytes]:
    root = store.path / "labels" / store.name
    return {str(p.relative_to(root)): p.read_bytes() for p in root.glob("s*/c/**/*") if p.is_file()}


def test_write_rebuilds_only_touched_chunks(store):
    store.write((0, 0, *store.shape), blocky_labels(store.shape, seed=3), edit=False)
    before = chunk_files(store)
    region = (70, 100, 140, 190)
    store.write(region, np.full((70, 90), 5, np.uint8))
    after = chunk_files(store)
    touched = set()
    for k in range(len(store.levels)):
        t, l, b, r = level_region(region, k)
        c = store.chunk
        touched |= {f"s{k}/c/{i}/{j}" for i in range(t // c, (b - 1) // c + 1) for j in range(l // c, (r - 1) // c + 1)}
    changed = {key for key in before if before[key] != after.get(key)} | (set(after) - set(before))
    assert changed and changed <= touched
    assert "s0/c/1/1" in changed and "s0/c/0/0" not in changed
    untouched = set(before) - touched
    assert untouched and all(before[key] == after[key] for key in untouched)


def test_edit_log_undo_and_review_persist(store, tmp_path):
    base = np.zeros((10, 10), np.uint8)
    base[:4] = 2
    store.write((0, 0, 10, 10), base, edit=False)
    assert store.edit_log() == []
    new = base.copy()
    new[:2] = 5  # 20 px 2->5
    new[8:, :3] = 1  # 6 px 0->1
    e = store.write((0, 0, 10, 10), new, author="ann", note="fix")
    assert e["id"] == 1 and e["author"] == "ann" and e["note"] == "fix" and e["region"] == [0, 0, 10, 10]
    assert e["changes"] == {"2->5": 20, "0->1": 6}
    assert "T" in e["time"]
    assert store.write((0, 0, 10, 10), new) is None  # no change, nothing recorded
    e2 = store.write((100, 100, 104, 104), np.full((4, 4), 6, np.uint8))
    assert e2["changes"] == {"0->6": 16} and store.write((1, 1, 2, 2), np.ones((1, 1), np.uint8), edit=False) is None
    store.mark_reviewed((0, 0, 50, 60), note="ok")

    reopened = LabelStore.open(store.path)
    assert [x["id"] for x in reopened.edit_log()] == [1, 2]
    assert reopened.corrected_regions() == [(0, 0, 10, 10), (100, 100, 104, 104)]
    assert reopened.reviewed_regions() == [(0, 0, 50, 60)]
    coarse_before = reopened.read(level=1)
    assert reopened.undo()["id"] == 2
    assert not reopened.read((100, 100, 104, 104)).any() and not reopened.read(level=2)[25:26, 25:26].any()
    assert reopened.undo()["id"] == 1
    np.testing.assert_array_equal(reopened.read((0, 0, 10, 10)), base)
    np.testing.assert_array_equal(reopened.read(level=1)[:5, :5], mode_downsample_reference(base))
    assert not np.array_equal(coarse_before, reopened.read(level=1))
    assert reopened.undo() is None and reopened.edit_log() == []
    assert not list((store.path / ".glnet" / "glnet" / "undo").iterdir())


def test_undo_keeps_last_20(tmp_path):
    store = LabelStore.create(tmp_path / "u.zarr", (8, 8), DEEPGLOBE)
    for i in range(22):
        store.write((0, 0, 1, 1), np.full((1, 1), i % 2 + 1, np.uint8))
    assert len(list((store.path / ".glnet" / "glnet" / "undo").glob("*.npz"))) == 20
    for _ in range(20):
        store.undo()
    with pytest.raises(GLNetError, match="can no longer be undone"):
        store.undo()


def test_ome_zarr_reader_finds_label_image(store):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Reader

    store.write((0, 0, 4, 4), np.full((4, 4), 3, np.uint8))
    nodes = list(Reader(parse_url(str(store.path / "labels")))())
    label = [n for n in nodes if n.load(Label)]
    assert len(label) == 1 and label[0].load(Multiscales)
    node = label[0]
    assert [d.shape for d in node.data] == [lv.shape for lv in store.levels]
    assert int(node.data[0][0, 0].compute()) == 3
    meta = store.levels[0].attrs  # arrays carry no glnet state; group metadata is NGFF 0.5
    assert "ome" not in meta
    import zarr

    ome = dict(zarr.open_group(store.path / "labels" / "glnet", mode="r").attrs)["ome"]
    assert ome["version"] == "0.5" and [a["name"] for a in ome["multiscales"][0]["axes"]] == ["y", "x"]
    colors = {c["label-value"]: c["rgba"] for c in ome["image-label"]["colors"]}
    names = {p["label-value"]: p["name"] for p in ome["image-label"]["properties"]}
    assert colors[1] == [0, 255, 255, 255] and names[5] == "water"


def test_errors(store, tmp_path):
    with pytest.raises(GLNetError, match="outside the label image"):
        store.write((0, 0, 301, 10), np.zeros((301, 10), np.uint8))
    with pytest.raises(GLNetError, match="outside the label image"):
        store.read((5, 5, 5, 10))
    with pytest.raises(GLNetError, match="shape"):
        store.write((0, 0, 10, 10), np.zeros((10, 11), np.uint8))
    with pytest.raises(GLNetError, match="outside 0..6"):
        store.write((0, 0, 2, 2), np.full((2, 2), 7, np.uint8))
    with pytest.raises(GLNetError, match="outside 0..6") as info:
        store.write((0, 0, 2, 2), np.full((2, 2), -1, np.int16))
    assert "\n" not in str(info.value)
    with pytest.raises(GLNetError, match="exists"):
        LabelStore.create(store.path, (10, 10), DEEPGLOBE)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("x")
    with pytest.raises(GLNetError, match="not a zarr store"):
        LabelStore.create(tmp_path / "plain", (10, 10), DEEPGLOBE, overwrite=True)
    with pytest.raises(GLNetError, match="not a label store"):
        LabelStore.open(tmp_path / "plain")
    with pytest.raises(GLNetError, match="not found"):
        LabelStore.open(tmp_path / "missing.zarr")
    with pytest.raises(GLNetError, match="no label image 'other'"):
        LabelStore.open(store.path, "other")
    with pytest.raises(GLNetError, match="read-only"):
        LabelStore.open(store.path, mode="r").write((0, 0, 1, 1), np.ones((1, 1), np.uint8))
    replaced = LabelStore.create(store.path, (10, 12), DEEPGLOBE, overwrite=True)
    assert LabelStore.open(replaced.path).shape == (10, 12)
