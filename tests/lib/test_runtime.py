"""Where and how the model runs: the precision a user gets and what they are told."""

import ctypes
import ctypes.util
import gc
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from glnet.checkpoint import GLNetCheckpoint
from glnet.classes import ClassTable
from glnet.cli import main
from glnet.errors import GLNetError
from glnet.inference.engine import Segmenter
from glnet.runtime import cpu_has_native_bf16

from helpers import REPO


def _segmenter(tiny_models, precision):
    model, fixed = tiny_models
    ckpt = GLNetCheckpoint("local2global", model, ClassTable.default(5), fixed, 96, 96)
    return Segmenter(ckpt, device="cpu", precision=precision)


def test_auto_precision_is_bf16_only_where_the_cpu_has_it_and_says_so(tiny_models, caplog):
    with caplog.at_level(logging.INFO, logger="glnet"):
        seg = _segmenter(tiny_models, "auto")
    expected = "bf16" if cpu_has_native_bf16() else "fp32"
    assert seg.precision == expected
    assert f"precision auto: {expected}" in caplog.text
    assert "emulated" not in caplog.text  # auto never picks a precision it would warn about


def test_bf16_warns_only_where_it_is_emulated(tiny_models, caplog):
    with caplog.at_level(logging.WARNING, logger="glnet"):
        seg = _segmenter(tiny_models, "bf16")
    assert seg.precision == "bf16"
    assert ("emulated" in caplog.text) != cpu_has_native_bf16()


def test_unknown_precision_is_a_clear_error(tiny_models):
    with pytest.raises(GLNetError, match="unknown precision 'fp8'"):
        _segmenter(tiny_models, "fp8")


def test_cli_names_the_precision_auto_picked(tmp_path, authors_files, real_image_path, capsys):
    out = tmp_path / "pred.png"
    args = ["segment", str(real_image_path), "-o", str(out), "--mode", "global"]
    assert main([*args, "--weights", str(authors_files["global"]), "--precision", "auto"]) == 0
    expected = "bf16" if cpu_has_native_bf16() else "fp32"
    assert capsys.readouterr().out.strip().endswith(f"cpu, {expected})")


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def _mmapped_blocks() -> int:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    return libc.mallinfo2().hblks


def _mmaps_a_large_block() -> bool:
    before = _mmapped_blocks()
    block = np.ones(64 << 20, np.uint8)  # 64 MB: mmapped unless mmap is off
    grew = _mmapped_blocks() > before
    del block
    return grew


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="glibc only")
def test_a_run_reuses_freed_memory_and_gives_it_back_even_when_stopped(tiny_models, request):
    # during a run large buffers come from the reusable heap; after it, even one stopped
    # halfway, large blocks are mmapped again (returned on free) and the heap is trimmed.
    # The allocator's state is the whole process's history (a large free chunk left by an
    # earlier test serves the next block without mmap), so this runs in a fresh process.
    if os.environ.get("GLNET_FRESH_PROCESS") != "1":
        test = f"{Path(__file__)}::{request.node.name}"
        env = {**os.environ, "GLNET_FRESH_PROCESS": "1"}
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
            env=env,
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        return
    model, fixed = tiny_models
    gc.collect()
    assert _mmaps_a_large_block()
    seg = Segmenter(GLNetCheckpoint("local2global", model, ClassTable.default(5), fixed, 96, 96), device="cpu")
    image = np.random.default_rng(0).integers(0, 255, (250, 213, 3), dtype=np.uint8)
    run = seg.open(image).run()
    next(run)
    assert not _mmaps_a_large_block()
    run.close()  # stopped halfway
    assert _mmaps_a_large_block()
    for _ in seg.open(image).run():
        pass
    assert _mmaps_a_large_block()
