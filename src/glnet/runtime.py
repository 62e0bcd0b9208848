"""Where and how the model runs: device, precision and CPU threads."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import logging
import os
import sys

import torch

from glnet.constants import Precision
from glnet.errors import GLNetError

log = logging.getLogger(__name__)

_AUTOCAST_DTYPES = {Precision.FP32: None, Precision.BF16: torch.bfloat16, Precision.FP16: torch.float16}


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


@functools.cache
def _cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux reports them (x86 ``flags``, Arm ``Features``); empty elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """True where the CPU has bf16 arithmetic (AVX512-BF16, AMX-BF16, Arm BF16) for oneDNN to use.

    ``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` alone is not the test:
    it is also True on AVX-512 CPUs without bf16 instructions (Ice Lake,
    Skylake), where oneDNN emulates bf16 and a 3x3 conv runs 3-4x slower
    than in fp32."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()) and bool(
        _cpu_flags() & {"avx512_bf16", "amx_bf16", "bf16"}
    )


def cpu_has_native_fp16() -> bool:
    """True where the CPU has fp16 arithmetic (AVX512-FP16, AMX-FP16) for oneDNN to use."""
    return bool(torch.ops.mkldnn._is_mkldnn_fp16_supported()) and bool(_cpu_flags() & {"avx512_fp16", "amx_fp16"})


def resolve_precision(device: torch.device, precision: Precision | str) -> Precision:
    """The precision to run in: ``precision`` itself, or for ``auto`` bf16
    where the device computes it natively (a CUDA GPU with bf16, a CPU with
    AVX512-BF16/AMX) and fp32 elsewhere.  fp32 is the only precision whose
    labels equal the reference evaluation's; bf16 agrees on about 99.6% of
    pixels (docs/benchmarks.md)."""
    precision = Precision.parse(precision)
    if precision != Precision.AUTO:
        return precision
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
    else:
        native = device.type == "cpu" and cpu_has_native_bf16()
    choice = Precision.BF16 if native else Precision.FP32
    log.info(
        "precision auto: %s (%s)", choice, "native bf16 on this device" if native else "no native bf16 on this device"
    )
    return choice


def autocast(device: torch.device, precision: Precision | str) -> contextlib.AbstractContextManager:
    """Mixed precision for the convolutions; fp32 is a no-op.  ``auto`` must
    be resolved first (:func:`resolve_precision`)."""
    precision = Precision.parse(precision)
    if precision not in _AUTOCAST_DTYPES:
        raise GLNetError(f"precision {precision} must be resolved to one of {', '.join(_AUTOCAST_DTYPES)} first")
    dtype = _AUTOCAST_DTYPES[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def warn_slow_precision(device: torch.device, precision: Precision | str) -> None:
    """Warn where bf16/fp16 would be emulated on this CPU, i.e. slower than fp32."""
    if device.type != "cpu" or precision == Precision.FP32:
        return
    native = cpu_has_native_bf16() if precision == Precision.BF16 else cpu_has_native_fp16()
    if not native:
        log.warning(
            "%s on this CPU is emulated (no %s instructions) and runs several times slower than fp32; "
            "use --precision fp32 or auto here, or a GPU",
            precision,
            "AVX512-BF16/AMX" if precision == Precision.BF16 else "AVX512-FP16/AMX-FP16",
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


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number


def return_freed_memory_promptly(threshold: int = 4 << 20) -> None:
    """Keep glibc from hoarding freed activation buffers (Linux only).

    glibc raises its mmap threshold each time a large block is freed, so
    after the first patch batch every activation map is carved from the
    heap and freed maps stay resident: peak RSS of a 2448 px local2global
    run was about 110 MB higher for no speed gain.  A fixed threshold keeps
    blocks of ``threshold`` bytes or more in mmap, returned on free.  It is
    process-wide and harmless elsewhere; a no-op off glibc."""
    if not sys.platform.startswith("linux"):
        return
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and friends: nothing to tune
        return
    mallopt(_M_MMAP_THRESHOLD, int(threshold))
