"""Where and how the model runs: device, precision and CPU threads."""

from __future__ import annotations

import contextlib
import logging
import os

import torch

from .errors import GLNetError

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when a GPU is usable, else the CPU (and says so)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        log.info("no CUDA GPU found: running on the CPU")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GLNetError("--device cuda was asked for but no CUDA GPU is usable here (try --device cpu)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise GLNetError(f"unknown device {name!r}: use auto, cpu or cuda") from None


def cpu_has_fast_bf16() -> bool:
    """True where the CPU has bf16 instructions (AVX512-BF16 or AMX)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision for the convolutions; fp32 is a no-op."""
    if precision not in PRECISIONS:
        raise GLNetError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def warn_slow_precision(device: torch.device, precision: str) -> None:
    if device.type == "cpu" and precision != "fp32" and not cpu_has_fast_bf16():
        log.warning(
            "%s on this CPU is emulated (no AVX512-BF16/AMX) and runs several times slower than fp32; "
            "use --precision fp32 here, or a GPU",
            precision,
        )


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads deliberately (default: the CPUs this
    process may use), since worker threads and containers often get a
    wrong default."""
    n = threads or available_cpus()
    if n < 1:
        raise GLNetError(f"--threads must be at least 1, got {n}")
    torch.set_num_threads(n)
    return n
