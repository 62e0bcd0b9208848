"""``glnet export``: reviewed or corrected regions of a label store as
training tiles."""

from __future__ import annotations

import argparse
from pathlib import Path

from glnet.cli import options
from glnet.cli.common import progress_bar
from glnet.store.export import export_tiles
from glnet.store.labelstore import LabelStore

EXPORT_EXAMPLES = """examples:
  # regions marked reviewed in napari, 1024 px tiles, colour masks, 20% validation
  glnet export scene_labels.zarr --image scene.tif -o retrain/
  # every corrected region, exact PNG images, index masks
  glnet export scene_labels.zarr --image scene.tif -o retrain/ --corrected --png --index-masks
  # the whole label image (e.g. checked predictions), 512 px tiles, fixed split seed
  glnet export scene_labels.zarr --image scene.tif -o retrain/ --all --tile 512 --seed 3 --overwrite
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export reviewed/corrected labels as training tiles",
        description="Cut regions of a label store and its image into DeepGlobe-layout training tiles.",
        epilog=EXPORT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("labels", metavar="LABELS.zarr", help="label store written by glnet / napari-glnet")
    p.add_argument("--image", required=True, help="the image the labels belong to")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for tiles and manifest.json")
    p.add_argument("--name", help="label image in the store (default: the first)")
    p.add_argument(
        "--tile", type=options.integer(16, 16384, " px"), default=1024, help="tile side in px (default 1024)"
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument("--all", dest="which", action="store_const", const="all", help="the whole label image")
    g.add_argument(
        "--corrected", dest="which", action="store_const", const="corrected", help="regions that were edited"
    )
    p.set_defaults(which="reviewed")
    p.add_argument("--index-masks", action="store_true", help="class-index masks instead of colour masks")
    p.add_argument("--png", action="store_true", help="lossless PNG images instead of JPEG")
    p.add_argument(
        "--val-fraction", type=options.fraction, default=0.2, help="share of tiles for validation (default 0.2)"
    )
    p.add_argument("--seed", type=options.seed, default=0, help="seed of the train/val split (default 0)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    p.add_argument(
        "--finished-only",
        action="store_true",
        help="a store whose run did not finish: export only the tiles inside blocks that were written",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from glnet.io.readers import open_image

    store = LabelStore.open(args.labels, args.name, mode="r")
    image_path = Path(args.image)
    image = open_image(image_path).levels[0]
    with progress_bar("export", "tile") as progress:
        manifest = export_tiles(
            store,
            image,
            args.output,
            tile=args.tile,
            which=args.which,
            mask="index" if args.index_masks else "color",
            image_format="png" if args.png else "jpg",
            val_fraction=args.val_fraction,
            seed=args.seed,
            overwrite=args.overwrite,
            source=str(image_path),
            progress=progress,
            finished_only=args.finished_only,
        )
    n_val = sum(t["split"] == "val" for t in manifest["tiles"])
    print(f"wrote {len(manifest['tiles'])} tiles ({n_val} val) to {args.output}")
    return 0
