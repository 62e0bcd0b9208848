"""Streaming a big image into an OME-Zarr label store: same labels as in
memory, resumable to identical bytes, independent of the worker count."""

import numpy as np
import pytest
import tifffile

from glnet.checkpoint import GLNetCheckpoint, load_checkpoint, save_checkpoint
from glnet.classes import ClassTable
from glnet.cli import main
from glnet.errors import GLNetError
from glnet.inference.engine import Segmenter
from glnet.inference.scenes import SceneSession
from glnet.inference.spec import ModelSpec
from glnet.inference.stream import _model_record, segment_to_store
from glnet.model import GLNet
from glnet.store.labelstore import LabelStore

from helpers import structured_image, tiny_config
from helpers.reference import seeded_weights

SCENE, OVERLAP, CHUNK = 200, 40, 64


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.glnet.pt"
    model = seeded_weights(GLNet(tiny_config()), 1)
    save_checkpoint(GLNetCheckpoint("global2local", model, ClassTable.default(5), None, 96, 96, scene_size=SCENE), path)
    return path


@pytest.fixture(scope="module")
def big_tiff(tmp_path_factory):
    image = structured_image(360, 330, seed=7)  # 2 x 2 scenes
    path = tmp_path_factory.mktemp("img") / "big.tif"
    tifffile.imwrite(path, image, tile=(128, 128), photometric="rgb")
    return path, image


def spec(checkpoint, **kw) -> ModelSpec:
    return ModelSpec(weights=str(checkpoint), device="cpu", batch_size=3, threads=1, **kw)


def test_the_resume_record_keeps_its_layout(checkpoint):
    """Stores written before ModelSpec moved still resume: same keys, plain JSON values."""
    record = _model_record(spec(checkpoint))
    assert record == {
        "weights": str(checkpoint),
        "mode": None,
        "global_weights": None,
        "precision": "fp32",
        "size_g": None,
        "size_p": None,
    }
    assert all(type(v) in (str, type(None)) for v in record.values())
    assert _model_record(spec(checkpoint, mode="global2local"))["mode"] == "global2local"


def levels(store: LabelStore) -> list[np.ndarray]:
    return [np.asarray(level[...]) for level in store.levels]


def test_streamed_labels_equal_the_in_memory_scenes(checkpoint, big_tiff, tmp_path):
    path, image = big_tiff
    out = tmp_path / "out.zarr"
    store = segment_to_store(spec(checkpoint), path, out, overlap=OVERLAP, chunk=CHUNK, review=True)
    seg = Segmenter(load_checkpoint(checkpoint), device="cpu", batch_size=3)
    session = SceneSession(seg, image, SCENE, OVERLAP)
    for _ in session.run():
        pass
    expected = session.result()
    assert len(session.grid) == 4
    np.testing.assert_array_equal(store.read(), expected.labels)
    assert store.attrs["complete"] is True

    # review outputs: confidence = max softmax, probabilities = 8 x 8 means of the softmax
    import zarr

    e = np.exp(expected.logits - expected.logits.max(0))
    p = e / e.sum(0)
    root = zarr.open_group(out, mode="r")
    conf = np.asarray(root["confidence"][...])
    assert np.abs(conf.astype(int) - np.rint(p.max(0) * 255)).max() <= 1
    probs = np.asarray(root["probabilities"][...], np.float32)
    assert probs.shape == (5, 45, 42)
    np.testing.assert_allclose(probs[:, 3, 4], p[:, 24:32, 32:40].mean((1, 2)), atol=2e-3)
    np.testing.assert_allclose(probs.sum(0), 1, atol=5e-3)


def test_an_interrupted_run_resumes_to_identical_bytes(checkpoint, big_tiff, tmp_path):
    path, _ = big_tiff
    whole = levels(segment_to_store(spec(checkpoint), path, tmp_path / "whole.zarr", overlap=OVERLAP, chunk=CHUNK))

    def stop_after_two(done, total):
        if done == 2:
            raise KeyboardInterrupt

    out = tmp_path / "resumed.zarr"
    with pytest.raises(KeyboardInterrupt):
        segment_to_store(spec(checkpoint), path, out, overlap=OVERLAP, chunk=CHUNK, progress=stop_after_two)
    half = LabelStore.open(out)
    assert half.attrs["complete"] is False and 0 < len(half.attrs["blocks_done"]) < 12

    with pytest.raises(GLNetError, match="--resume"):
        segment_to_store(spec(checkpoint), path, out, overlap=OVERLAP, chunk=CHUNK)
    with pytest.raises(GLNetError, match="different run"):
        segment_to_store(spec(checkpoint), path, out, overlap=OVERLAP + 8, chunk=CHUNK, resume=True)

    seen = []
    resumed = segment_to_store(
        spec(checkpoint), path, out, overlap=OVERLAP, chunk=CHUNK, resume=True, progress=lambda d, t: seen.append(d)
    )
    assert seen[0] == 2, "the two saved scenes are not computed again"
    assert len(levels(resumed)) == len(whole) > 0
    for a, b in zip(levels(resumed), whole):
        np.testing.assert_array_equal(a, b)


def test_cli_writes_a_label_store_that_ome_zarr_reads(checkpoint, big_tiff, tmp_path, capsys):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader

    path, _ = big_tiff
    out = tmp_path / "cli.zarr"
    args = ["segment", str(path), "-o", str(out), "--weights", str(checkpoint), "--device", "cpu", "--overlap", "40"]
    assert main(args) == 0
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    nodes = list(Reader(parse_url(str(out / "labels")))())
    labels = [n for n in nodes if n.load(Label)]
    assert len(labels) == 1 and labels[0].data[0].shape == (360, 330)
    np.testing.assert_array_equal(np.asarray(labels[0].data[0]), LabelStore.open(out).read())


@pytest.mark.slow
def test_two_dask_workers_give_the_same_labels(checkpoint, big_tiff, tmp_path):
    path, _ = big_tiff
    one = segment_to_store(spec(checkpoint), path, tmp_path / "one.zarr", overlap=OVERLAP, chunk=CHUNK)
    two = segment_to_store(spec(checkpoint), path, tmp_path / "two.zarr", overlap=OVERLAP, chunk=CHUNK, workers=2)
    assert len(levels(one)) == len(levels(two)) > 0
    for a, b in zip(levels(one), levels(two)):
        np.testing.assert_array_equal(a, b)
