"""Write a small, deterministic, UNTRAINED GLNet checkpoint for the demo and tests.

    python sample_data/make_untrained_checkpoint.py OUT.pt

It exercises the pipeline (loading, patching, the napari widget, colour
output) and nothing more: its weights are random (torch.manual_seed(0)), so
the classes it predicts are meaningless until the trained demo model ships
(the training issue).  ResNet-18 backbone, FPN width 64, mode global2local,
the DeepGlobe class table, size_g = size_p = 508, fp16 weights: about 50 MB,
fast on a CPU.

Idempotent: if OUT already exists, nothing is done.
"""

from __future__ import annotations

import sys
from pathlib import Path

UNTRAINED_NOTE = "untrained random weights: exercises the pipeline; its classes are meaningless"


def make_untrained_checkpoint(out: str | Path) -> Path:
    """Build the untrained checkpoint at ``out`` unless that file exists; return its path."""
    out = Path(out)
    if out.exists():
        return out
    import torch

    from glnet.checkpoint import GLNetCheckpoint, save_checkpoint
    from glnet.classes import DEEPGLOBE
    from glnet.model import GLNet, GLNetConfig

    torch.manual_seed(0)
    model = GLNet(GLNetConfig(len(DEEPGLOBE), "resnet18", 64)).eval()
    ckpt = GLNetCheckpoint(
        "global2local",
        model,
        DEEPGLOBE,
        size_g=508,
        size_p=508,
        source="sample_data/make_untrained_checkpoint.py",
        extra={"untrained": True, "note": UNTRAINED_NOTE},
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(ckpt, out, half=True)  # atomic: a crash never leaves half a file
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python sample_data/make_untrained_checkpoint.py OUT.pt", file=sys.stderr)
        return 2
    out = Path(argv[0])
    if out.exists():
        print(f"{out} exists: leaving it as it is")
        return 0
    make_untrained_checkpoint(out)
    print(f"wrote {out} (UNTRAINED: for exercising the pipeline only; its classes are meaningless)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
