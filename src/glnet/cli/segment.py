"""``glnet segment``: one image to a mask file, or a huge one into an
OME-Zarr label store scene by scene."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from glnet.atomic import atomic_write
from glnet.cli.common import add_model_args, check_output, model_spec, progress_bar, run_with_progress
from glnet.errors import GLNetError
from glnet.inference.engine import Segmenter
from glnet.inference.results import Progress

log = logging.getLogger("glnet")

EXAMPLES = """examples:
  # the authors' DeepGlobe local2global (their two files)
  glnet segment 118757_sat.jpg -o 118757_pred.png --mode local2global \\
      --weights fpn_deepglobe_local2global.pth --global-weights fpn_deepglobe_global.pth
  # our own checkpoint (knows its mode and classes), DeepGlobe colours, logits too
  glnet segment scene.tif -o scene_pred.png --weights demo.glnet.pt --color --logits scene_logits.npy
  # only a region (top,left,bottom,right in pixels), fast global-only overview
  glnet segment scene.jpg -o overview.png --mode global --weights fpn_deepglobe_global.pth
  # a huge image into an OME-Zarr label store, scene by scene, on a 2-process dask cluster
  glnet segment huge.ome.tif -o huge_labels.zarr --weights demo.glnet.pt --workers 2
  glnet segment huge.ome.tif -o huge_labels.zarr --weights demo.glnet.pt --resume   # after an interruption
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "segment", help="segment one image", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("image", help="JPEG, PNG or TIFF image")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="class-index mask to write (.png, .tif), or an OME-Zarr label store (.zarr) written scene by scene",
    )
    p.add_argument("--color", action="store_true", help="write the class colours instead of indices")
    p.add_argument("--logits", metavar="NPY", help="also write mean class scores, float32 C x H x W (.npy)")
    p.add_argument("--region", metavar="T,L,B,R", help="only this rectangle (top,left,bottom,right in px)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    big = p.add_argument_group("huge images")
    big.add_argument("--scene-size", type=int, help="scene size in px (default: the checkpoint's training size, 2448)")
    big.add_argument("--overlap", type=int, help="overlap between scenes in px (default: scene size / 8)")
    big.add_argument("--resume", action="store_true", help=".zarr output: continue an interrupted run")
    big.add_argument(
        "--workers", type=int, default=0, help=".zarr output: scenes on a local dask cluster of N processes"
    )
    big.add_argument(
        "--scheduler", metavar="ADDRESS", help=".zarr output: scenes on an existing dask cluster (tcp://host:8786)"
    )
    big.add_argument(
        "--review",
        action="store_true",
        help=".zarr output: also write per-pixel confidence (max softmax, uint8) and 1/8-scale class probabilities",
    )
    add_model_args(p)
    p.set_defaults(func=run)


def _parse_region(text: str | None) -> tuple[int, int, int, int] | None:
    if text is None:
        return None
    try:
        top, left, bottom, right = (int(v) for v in text.split(","))
    except ValueError:
        raise GLNetError(f"--region wants four integers top,left,bottom,right, got {text!r}") from None
    return top, left, bottom, right


def run(args: argparse.Namespace) -> int:
    image_path, out = Path(args.image), Path(args.output)
    if out.suffix.lower() == ".zarr":
        return _to_store(args, image_path, out)
    from glnet.inference.scenes import SceneSession
    from glnet.io.labels import write_label
    from glnet.io.readers import open_image

    check_output(out, args.overwrite, image_path)
    if out.suffix.lower() not in (".png", ".tif", ".tiff"):
        raise GLNetError(f"output {out} must end in .png, .tif, .tiff or .zarr")
    logits_path = Path(args.logits) if args.logits else None
    if logits_path is not None:
        check_output(logits_path, args.overwrite, image_path)
        if logits_path.suffix != ".npy":
            raise GLNetError(f"--logits {logits_path} must end in .npy")
    region = _parse_region(args.region)
    image = open_image(image_path).levels[0]
    seg = model_spec(args).load()
    scenes = SceneSession(seg, image, args.scene_size, args.overlap)
    desc = f"{seg.mode} {image_path.name}"
    if len(scenes.grid) == 1:  # the core engine on the whole image (global mode: --logits are the global map)
        pixels, done = np.asarray(image), []

        def whole(s: Segmenter) -> Iterator[Progress]:
            session = s.open(pixels)
            yield from session.run(region)
            done.append(session.result(region))

        seg = run_with_progress(seg, whole, desc)
        result = done[-1]
    else:
        log.info("%dx%d image: %d scenes of %d px", *scenes.shape, len(scenes.grid), scenes.grid.scene)

        def by_scene(s: Segmenter) -> Iterator[Progress]:
            nonlocal scenes
            scenes = scenes.on(s)
            yield from (p for _, p in scenes.run(region))

        seg = run_with_progress(seg, by_scene, desc)
        result = scenes.result(region)
    write_label(out, result.labels, seg.checkpoint.classes, color=args.color)
    if logits_path is not None:
        with atomic_write(logits_path) as f:
            np.save(f, result.logits.astype(np.float32, copy=False))
    print(f"wrote {out} ({result.labels.shape[1]}x{result.labels.shape[0]}, {seg.mode}, {seg.device.type})")
    if seg.coarse_to_fine is not None:
        print(f"coarse-to-fine: {result.patches_skipped} patch(es) skipped (global prediction used there)")
    return 0


def _to_store(args: argparse.Namespace, image_path: Path, out: Path) -> int:
    from glnet.inference.stream import segment_to_store

    if args.logits or args.color or args.region:
        raise GLNetError("--logits, --color and --region apply to .png/.tif output, not to a .zarr label store")
    spec = model_spec(args)
    with progress_bar(f"segment {image_path.name}", "scene", leave=True) as progress:
        store = segment_to_store(
            spec,
            image_path,
            out,
            scene_size=args.scene_size,
            overlap=args.overlap,
            resume=args.resume,
            overwrite=args.overwrite,
            workers=args.workers,
            scheduler=args.scheduler,
            progress=progress,
            review=args.review,
        )
    print(f"wrote {out}/labels/{store.name} ({store.shape[1]}x{store.shape[0]}, {len(store.levels)} levels)")
    return 0
