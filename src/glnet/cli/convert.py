"""``glnet convert``: any readable image to an OME-Zarr pyramid."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from glnet.cli.common import progress_bar
from glnet.errors import GLNetError
from glnet.geometry import level_shapes
from glnet.io.pyramid import write_ome_zarr

EXAMPLES = """examples:
  # a huge JPEG or TIFF to a pyramid napari opens instantly at any zoom
  glnet convert scene.tif -o scene.ome.zarr
  # bigger tiles (fewer files), replacing an earlier conversion
  glnet convert 118757_sat.jpg -o 118757.ome.zarr --chunk 1024 --overwrite
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="write an image as an OME-Zarr pyramid",
        description="Convert a JPEG, PNG, TIFF or zarr image to an OME-Zarr (NGFF 0.5) multiscale pyramid.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("image", help="JPEG, PNG, TIFF/BigTIFF, OME-Zarr or zarr image")
    p.add_argument("-o", "--output", required=True, metavar="OUT.ome.zarr", help="the pyramid to write")
    p.add_argument("--chunk", type=int, default=512, help="tile size in pixels (default 512)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Read level 0 lazily and stream it into a pyramid."""
    from glnet.io.readers import open_image

    src, out = Path(args.image), Path(args.output)
    if src.exists() and out.exists() and src.resolve() == out.resolve():
        raise GLNetError(f"output {out} is the input image: refusing to overwrite it")
    if out.exists() and not args.overwrite:
        raise GLNetError(f"{out} exists: pass --overwrite to replace it")
    # no cache detour: JPEG/PNG are decoded in memory once, the rest read lazily
    pyramid = open_image(src, flat_limit=sys.maxsize)
    h, w = pyramid.shape
    with progress_bar(f"convert {src.name}", "block") as progress:
        write_ome_zarr(
            pyramid.levels[0],
            out,
            chunk=args.chunk,
            overwrite=args.overwrite,
            pixel_size=pyramid.pixel_size,
            unit=pyramid.unit,
            progress=progress,
        )
    print(f"wrote {out} ({w}x{h}, {len(level_shapes((h, w)))} levels)")
    return 0
