"""Where and how the model runs: device, precision and CPU threads."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import logging
import os
import sys
from collections.abc import Iterator

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


# glibc's mallopt parameter numbers
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_GLIBC_MMAP_MAX = 65536  # glibc's default M_MMAP_MAX
_OUTSIDE_RUNS_MMAP_THRESHOLD = 4 << 20
_OUTSIDE_RUNS_TRIM_THRESHOLD = 128 << 10  # glibc's default
_runs_reusing = 0  # nesting depth of reuse_freed_memory()
_peak_at_trim = 0  # ru_maxrss (KiB) when release_between_batches last trimmed
_TRIM_GROWTH_KIB = 32 << 10  # a batch that raised the peak by less is not worth the page faults


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """glibc, or None (not Linux, or a libc without mallopt/malloc_trim: nothing to tune)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 - both must exist
    except (OSError, AttributeError):
        return None
    return libc


def return_freed_memory_promptly() -> None:
    """Outside a run, keep glibc from hoarding freed buffers (Linux only).

    glibc raises its mmap threshold each time a large block is freed, so
    freed maps would stay resident in the heap between runs.  A fixed 4 MB
    threshold keeps large blocks in mmap, returned on free.  Process-wide;
    a no-op off glibc.  During a run :func:`reuse_freed_memory` applies."""
    libc = _libc()
    if libc is not None and not _runs_reusing:
        libc.mallopt(_M_MMAP_THRESHOLD, _OUTSIDE_RUNS_MMAP_THRESHOLD)


def release_between_batches(*, always: bool = False) -> None:
    """Inside a run, before a batch: give the heap's free pages back when the
    batches since the last trim raised the process's peak RSS by 32 MB or
    more (or ``always``).

    Long-lived buffers (the merged maps, the finished patches) land between
    a batch's activations, so the next batch does not fit the holes exactly
    and the heap grows by another 80-130 MB of freed pages.  Trimming then
    keeps the peak near the live buffers; once the batches reuse the same
    pages the peak stops rising and nothing is trimmed, so the page faults
    that trimming costs (one per 4 KiB the next batch touches) are paid a
    few times per image, not per batch (docs/benchmarks.md).  A no-op off
    glibc and outside a run (where large blocks are unmapped on free)."""
    global _peak_at_trim
    libc = _libc()
    if libc is None or not _runs_reusing:
        return
    import resource  # Unix only, like glibc

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if always or peak > _peak_at_trim + _TRIM_GROWTH_KIB:
        libc.malloc_trim(0)
        _peak_at_trim = peak


@contextlib.contextmanager
def reuse_freed_memory() -> Iterator[None]:
    """During a run, every freed activation buffer stays in the heap for the
    next batch; on leaving, the heap is trimmed (Linux glibc only).

    Large blocks in mmap cost a fresh mapping and a page fault per 4 KiB on
    every use: with a 4 MB threshold a 2448 px local2global run spent 10-20 s
    in the kernel and a 1x1 conv ran at a third of its speed.  glibc's mmap
    threshold cannot exceed 32 MiB, smaller than a batch's largest maps, so
    mmap is switched off (M_MMAP_MAX 0) and the heap is not trimmed on free;
    ``malloc_trim`` on leaving returns what the run freed.  Peak RSS stays
    that of the run's live buffers plus fragmentation (docs/benchmarks.md).
    Nested uses (scenes of an image) trim once, at the outermost exit."""
    global _runs_reusing
    libc = _libc()
    if libc is None:
        yield
        return
    if not _runs_reusing:
        libc.mallopt(_M_MMAP_MAX, 0)
        libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    _runs_reusing += 1
    try:
        yield
    finally:
        _runs_reusing -= 1
        if not _runs_reusing:
            libc.mallopt(_M_MMAP_MAX, _GLIBC_MMAP_MAX)
            libc.mallopt(_M_TRIM_THRESHOLD, _OUTSIDE_RUNS_TRIM_THRESHOLD)
            libc.mallopt(_M_MMAP_THRESHOLD, _OUTSIDE_RUNS_MMAP_THRESHOLD)
            libc.malloc_trim(0)


def tensor_bytes(tensors: list[torch.Tensor]) -> int:
    """Memory the tensors' elements take (what a cache of them is budgeted by)."""
    return sum(t.numel() * t.element_size() for t in tensors)
