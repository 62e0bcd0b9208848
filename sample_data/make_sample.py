"""Write a synthetic land-cover scene and its exact ground truth, in the DeepGlobe layout.

    python sample_data/make_sample.py OUTDIR [--size 2448] [--seed 0] [--format jpg|png|tif]
    python sample_data/make_sample.py OUTDIR --huge 20000 [--seed 0]

The first form writes ``OUTDIR/synthetic_<seed>_sat.<ext>`` and the colour mask
``OUTDIR/synthetic_<seed>_mask.png``, like a DeepGlobe tile.  ``--huge N``
instead writes an N x N pyramidal TIFF ``synthetic_<seed>_<N>_sat.tif`` and a
tiled index mask ``synthetic_<seed>_<N>_mask.tif``, tile by tile in bounded
memory, for trying huge-image code paths.  The files are generated data: do
not add them to git.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from glnet.data.synthetic_files import write_scene
from glnet.errors import GLNetError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path, help="folder to write into (created if missing)")
    parser.add_argument("--size", type=int, default=2448, help="side of the square scene in pixels (default 2448)")
    parser.add_argument("--seed", type=int, default=0, help="scene seed (default 0)")
    parser.add_argument("--format", choices=("jpg", "png", "tif"), default="jpg", help="image format (default jpg)")
    parser.add_argument("--huge", type=int, metavar="N", help="write an N x N pyramidal TIFF and a TIFF index mask")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    args.outdir.mkdir(parents=True, exist_ok=True)
    if args.huge is not None:
        stem, size = f"synthetic_{args.seed}_{args.huge}", args.huge
        image, mask = args.outdir / f"{stem}_sat.tif", args.outdir / f"{stem}_mask.tif"
    else:
        stem, size = f"synthetic_{args.seed}", args.size
        image, mask = args.outdir / f"{stem}_sat.{args.format}", args.outdir / f"{stem}_mask.png"
    start = time.perf_counter()
    try:
        write_scene(image, size, size, seed=args.seed, mask_path=mask)
    except GLNetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {image} and {mask} ({size} x {size}, seed {args.seed}) in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
