"""One way from settings to a Segmenter (ModelSpec), and running out of memory
without losing the run: half the batch, then the CPU, same labels."""

import copy
import pickle

import numpy as np
import pytest
import torch

from glnet import ModelSpec
from glnet.checkpoint import GLNetCheckpoint, save_checkpoint
from glnet.classes import ClassTable
from glnet.constants import Mode, Precision
from glnet.errors import GLNetError
from glnet.inference.coarse import CoarseToFine
from glnet.inference.engine import Segmenter
from glnet.inference.memory import Fallback, with_memory_fallback

from helpers import save_authors_layout, structured_image

SIZE = 96


@pytest.fixture
def ours(tmp_path, tiny_models):
    path = tmp_path / "g2l.glnet.pt"
    save_checkpoint(GLNetCheckpoint("global2local", tiny_models[0], ClassTable.default(5), None, SIZE, SIZE), path)
    return path


def test_a_spec_is_keyword_only_frozen_picklable_and_hashable(ours):
    with pytest.raises(TypeError):
        ModelSpec(str(ours))
    spec = ModelSpec(weights=ours, mode="global2local", precision="fp32", coarse_to_fine=True)
    assert spec.weights == str(ours) and spec.mode is Mode.GLOBAL2LOCAL and spec.precision is Precision.FP32
    assert spec.coarse_to_fine == CoarseToFine()
    assert pickle.loads(pickle.dumps(spec)) == spec  # what a dask worker receives
    assert {spec: 1}[ModelSpec(weights=str(ours), mode="global2local", coarse_to_fine=CoarseToFine())] == 1
    with pytest.raises(AttributeError):
        spec.batch_size = 2
    assert spec.replace(batch_size=2).batch_size == 2 and spec.batch_size == 4
    with pytest.raises(GLNetError, match="unknown mode"):
        ModelSpec(weights=ours, mode="local")


def test_load_reads_ours_and_the_authors_files(ours, tmp_path, tiny_models):
    seg = ModelSpec(weights=ours, device="cpu", batch_size=3, size_p=128).load()
    assert (seg.mode, seg.batch_size, seg.size_p, seg.size_g) == ("global2local", 3, 128, SIZE)
    authors = save_authors_layout(tiny_models[0], tmp_path / "theirs.pth")
    with pytest.raises(GLNetError, match="say which mode"):
        ModelSpec(weights=authors).load()
    assert ModelSpec(weights=authors, mode="global2local", device="cpu").load().mode == Mode.GLOBAL2LOCAL
    with pytest.raises(GLNetError, match="is a global2local checkpoint"):
        ModelSpec(weights=ours, mode="local2global").load()


def _out_of_memory_above(seg: Segmenter, patches: int, calls: list[int]):
    """A real forward hook on the local backbone that fails like CUDA does
    when a batch holds more than ``patches`` patches."""

    def hook(_module, inputs):
        calls.append(inputs[0].shape[0])
        if inputs[0].shape[0] > patches:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    return seg.model.resnet_local.register_forward_pre_hook(hook)


def test_out_of_memory_halves_the_batch_and_keeps_the_labels(tiny_models, one_torch_thread):
    image = structured_image(250, 213, seed=3)
    ckpt = GLNetCheckpoint("global2local", tiny_models[0], ClassTable.default(5), None, SIZE, SIZE)
    expected = Segmenter(copy.deepcopy(ckpt), device="cpu", batch_size=4).segment(image)

    seg = Segmenter(ckpt, device="cpu", batch_size=4)
    calls: list[int] = []
    _out_of_memory_above(seg, 1, calls)
    done = []

    def work(s: Segmenter):
        session = s.open(image)
        yield from session.run()
        done.append((s, session.result()))

    items = list(with_memory_fallback(seg, work))
    fallbacks = [i for i in items if isinstance(i, Fallback)]
    assert [f.segmenter.batch_size for f in fallbacks] == [2, 1]
    assert "retrying with batch size 2" in fallbacks[0].message
    assert calls[:2] == [4, 2] and set(calls[2:]) == {1}
    final, result = done[-1]
    assert final is fallbacks[-1].segmenter and final.batch_size == 1
    np.testing.assert_array_equal(result.labels, expected.labels)


def test_out_of_memory_with_one_patch_on_the_cpu_is_raised(tiny_models, one_torch_thread):
    ckpt = GLNetCheckpoint("global2local", tiny_models[0], ClassTable.default(5), None, SIZE, SIZE)
    seg = Segmenter(ckpt, device="cpu", batch_size=2)
    _out_of_memory_above(seg, 0, [])
    image = structured_image(120, 120, seed=1)
    items = []
    with pytest.raises(torch.cuda.OutOfMemoryError):
        for item in with_memory_fallback(seg, lambda s: s.open(image).run()):
            items.append(item)
    assert [i.segmenter.batch_size for i in items if isinstance(i, Fallback)] == [1]
