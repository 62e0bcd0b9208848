"""Where and how the model runs: the precision a user gets and what they are told."""

import logging

import pytest

from glnet.checkpoint import GLNetCheckpoint
from glnet.classes import ClassTable
from glnet.cli import main
from glnet.errors import GLNetError
from glnet.inference.engine import Segmenter
from glnet.runtime import cpu_has_native_bf16


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
