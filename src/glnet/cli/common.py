"""What several commands share: the model and runtime options and the
ModelSpec they describe, progress bars (with the out-of-memory fallback)
and output checks."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from glnet.constants import Mode, Precision
from glnet.errors import GLNetError
from glnet.inference.coarse import CoarseToFine
from glnet.inference.engine import Segmenter
from glnet.inference.memory import Fallback, with_memory_fallback
from glnet.inference.results import Progress
from glnet.inference.spec import ModelSpec

log = logging.getLogger("glnet")

DEVICE_HELP = "auto (CUDA when present), cpu, cuda or cuda:N"


def add_model_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    """--weights/--mode/sizes, runtime and coarse-to-fine options of segment and evaluate."""
    g = p.add_argument_group("model" if required else "model (with --data)")
    g.add_argument(
        "--weights", required=required, metavar="CKPT", help="checkpoint: ours, or the authors' file for --mode"
    )
    g.add_argument("--mode", choices=Mode.choices(), help="required for the authors' files")
    g.add_argument(
        "--global-weights", metavar="CKPT_G", help="the authors' global checkpoint (their local2global needs it)"
    )
    g.add_argument("--size-g", type=int, help="global view size in px (default: checkpoint's, 508)")
    g.add_argument("--size-p", type=int, help="patch size in px (default: checkpoint's, 508)")
    r = p.add_argument_group("runtime")
    r.add_argument("--precision", choices=Precision.choices(), default=Precision.FP32.value)
    r.add_argument("--device", default="auto", help=DEVICE_HELP)
    r.add_argument("--batch-size", type=int, default=4, help="patches per local-branch batch (default 4)")
    r.add_argument("--threads", type=int, help="CPU threads for torch (default: all CPUs this process may use)")
    c = p.add_argument_group("coarse-to-fine (binary, imbalanced tasks)")
    add_coarse_to_fine_args(
        c,
        "run the local branch only on patches near the global prediction's foreground (class != 0); "
        "the others take the global prediction",
    )


def add_coarse_to_fine_args(p, help: str) -> None:
    p.add_argument("--coarse-to-fine", action="store_true", help=help)
    p.add_argument(
        "--ctf-margin",
        type=int,
        default=CoarseToFine.margin,
        metavar="PX",
        help=f"patches within PX of foreground count (default {CoarseToFine.margin})",
    )


def coarse_to_fine(args: argparse.Namespace) -> CoarseToFine | None:
    return CoarseToFine(margin=args.ctf_margin) if args.coarse_to_fine else None


def model_spec(args: argparse.Namespace) -> ModelSpec:
    """The ModelSpec the model and runtime options describe."""
    return ModelSpec(
        weights=args.weights,
        mode=args.mode,
        global_weights=args.global_weights,
        device=args.device,
        precision=args.precision,
        batch_size=args.batch_size,
        size_g=args.size_g,
        size_p=args.size_p,
        threads=args.threads,
        coarse_to_fine=coarse_to_fine(args),
    )


def run_with_progress(seg: Segmenter, work: Callable[[Segmenter], Iterator[Progress]], desc: str) -> Segmenter:
    """Drain ``work(seg)``'s Progress values behind a tqdm bar.  Out of memory,
    the work starts again with half the batch, then on the CPU (the library
    logs a warning); returns the Segmenter it finished on."""
    from tqdm import tqdm

    with tqdm(total=None, desc=desc, unit="patch", disable=None, leave=False) as bar:
        for p in with_memory_fallback(seg, work):
            if isinstance(p, Fallback):
                seg = p.segmenter
                continue
            bar.total = p.total
            bar.set_postfix_str(p.stage)
            bar.n = p.done
            bar.refresh()
    return seg


@contextmanager
def progress_bar(desc: str, unit: str, leave: bool = False) -> Iterator[Callable[[int, int], None]]:
    """A ``progress(done, total)`` callback for the library, drawn as a tqdm bar."""
    from tqdm import tqdm

    with tqdm(total=None, desc=desc, unit=unit, disable=None, leave=leave) as bar:

        def progress(done: int, total: int) -> None:
            bar.total, bar.n = total, done
            bar.refresh()

        yield progress


def check_output(path: Path, overwrite: bool, image: Path) -> None:
    if path.resolve() == image.resolve():
        raise GLNetError(f"output {path} is the input image: refusing to overwrite it")
    if path.exists() and not overwrite:
        raise GLNetError(f"{path} exists: pass --overwrite to replace it")
    if not path.parent.is_dir():
        raise GLNetError(f"output folder {path.parent} does not exist")
