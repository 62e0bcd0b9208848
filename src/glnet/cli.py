"""The ``glnet`` command line: segment images and evaluate predictions."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .errors import GLNetError

log = logging.getLogger("glnet")

# Modules with ``add_parser(subparsers)``: each adds its subcommand and sets
# ``func`` (a function of the parsed args returning an exit code).
_COMMAND_MODULES: tuple[str, ...] = ("pyramid", "export", "train.cli")

SEGMENT_EXAMPLES = """examples:
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

EVALUATE_EXAMPLES = """examples:
  # compare prediction masks with ground truth (files or folders, paired by image id)
  glnet evaluate --pred preds/ --gt masks/ --exclude 0
  # run a model over a DeepGlobe-layout folder (*_sat.jpg + *_mask.png)
  glnet evaluate --data deepglobe/val --mode global2local --weights fpn_deepglobe_global2local.pth --json
"""


def _add_model_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_argument_group("model" if required else "model (with --data)")
    g.add_argument("--weights", required=required, metavar="CKPT", help="checkpoint: ours, or the authors' file for --mode")
    g.add_argument("--mode", choices=["global", "global2local", "local2global"], help="required for the authors' files")
    g.add_argument("--global-weights", metavar="CKPT_G", help="the authors' global checkpoint (their local2global needs it)")
    g.add_argument("--size-g", type=int, help="global view size in px (default: checkpoint's, 508)")
    g.add_argument("--size-p", type=int, help="patch size in px (default: checkpoint's, 508)")
    r = p.add_argument_group("runtime")
    r.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    r.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    r.add_argument("--batch-size", type=int, default=4, help="patches per local-branch batch (default 4)")
    r.add_argument("--threads", type=int, help="CPU threads for torch (default: all CPUs this process may use)")
    c = p.add_argument_group("coarse-to-fine (binary, imbalanced tasks)")
    c.add_argument(
        "--coarse-to-fine", action="store_true",
        help="run the local branch only on patches near the global prediction's foreground (class != 0); "
        "the others take the global prediction",
    )  # fmt: skip
    c.add_argument("--ctf-margin", type=int, default=64, metavar="PX", help="patches within PX of foreground count (default 64)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glnet", description="GLNet segmentation of ultra-high-resolution images.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    seg = sub.add_parser(
        "segment", help="segment one image", epilog=SEGMENT_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    seg.add_argument("image", help="JPEG, PNG or TIFF image")
    seg.add_argument(
        "-o", "--output", required=True,
        help="class-index mask to write (.png, .tif), or an OME-Zarr label store (.zarr) written scene by scene",
    )  # fmt: skip
    seg.add_argument("--color", action="store_true", help="write the class colours instead of indices")
    seg.add_argument("--logits", metavar="NPY", help="also write mean class scores, float32 C x H x W (.npy)")
    seg.add_argument("--region", metavar="T,L,B,R", help="only this rectangle (top,left,bottom,right in px)")
    seg.add_argument("--overwrite", action="store_true", help="replace existing output files")
    big = seg.add_argument_group("huge images")
    big.add_argument("--scene-size", type=int, help="scene size in px (default: the checkpoint's training size, 2448)")
    big.add_argument("--overlap", type=int, help="overlap between scenes in px (default: scene size / 8)")
    big.add_argument("--resume", action="store_true", help=".zarr output: continue an interrupted run")
    big.add_argument("--workers", type=int, default=0, help=".zarr output: scenes on a local dask cluster of N processes")
    big.add_argument("--scheduler", metavar="ADDRESS", help=".zarr output: scenes on an existing dask cluster (tcp://host:8786)")
    big.add_argument(
        "--review", action="store_true",
        help=".zarr output: also write per-pixel confidence (max softmax, uint8) and 1/8-scale class probabilities",
    )  # fmt: skip
    _add_model_args(seg)

    ev = sub.add_parser(
        "evaluate",
        help="per-class IoU of predictions against ground truth",
        epilog=EVALUATE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = ev.add_mutually_exclusive_group(required=True)
    src.add_argument("--pred", help="predicted mask file or folder (needs --gt)")
    src.add_argument("--data", help="DeepGlobe-layout folder: run the model on *_sat.jpg, score against *_mask.png")
    ev.add_argument("--gt", help="ground-truth mask file or folder")
    ev.add_argument("--exclude", default="", help="class ids left out of the means, e.g. 0 (the DeepGlobe protocol)")
    ev.add_argument("--ignore-index", type=int, help="ground-truth value to skip (e.g. 255)")
    ev.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_model_args(ev, required=False)
    seg.set_defaults(func=cmd_segment)
    ev.set_defaults(func=cmd_evaluate)
    for module in _COMMAND_MODULES:  # commands that live beside the library code they drive
        importlib.import_module(f"glnet.{module}").add_parser(sub)
    return parser


# -- helpers ---------------------------------------------------------------
def _segmenter(args):
    from .checkpoint import load_checkpoint
    from .engine import Segmenter
    from .runtime import set_threads

    set_threads(args.threads)
    ckpt = load_checkpoint(args.weights, mode=args.mode, global_path=args.global_weights)
    seg = Segmenter(ckpt, args.device, args.precision, args.batch_size, args.size_g, args.size_p, _coarse_to_fine(args))
    if seg.device.type == "cpu":
        log.info("running on the CPU")
    return seg


def _coarse_to_fine(args):
    from .coarse import CoarseToFine

    return CoarseToFine(margin=args.ctf_margin) if args.coarse_to_fine else None


def _parse_region(text: str | None):
    if text is None:
        return None
    try:
        top, left, bottom, right = (int(v) for v in text.split(","))
    except ValueError:
        raise GLNetError(f"--region wants four integers top,left,bottom,right, got {text!r}") from None
    return top, left, bottom, right


def _run_with_progress(steps, desc: str) -> None:
    from tqdm import tqdm

    with tqdm(total=None, desc=desc, unit="patch", disable=None, leave=False) as bar:
        for p in steps:
            bar.total = p.total
            bar.set_postfix_str(p.stage)
            bar.n = p.done
            bar.refresh()


def _check_output(path: Path, overwrite: bool, image: Path) -> None:
    if path.resolve() == image.resolve():
        raise GLNetError(f"output {path} is the input image: refusing to overwrite it")
    if path.exists() and not overwrite:
        raise GLNetError(f"{path} exists: pass --overwrite to replace it")
    if not path.parent.is_dir():
        raise GLNetError(f"output folder {path.parent} does not exist")


# -- commands --------------------------------------------------------------
def cmd_segment(args) -> int:
    image_path, out = Path(args.image), Path(args.output)
    if out.suffix.lower() == ".zarr":
        return _segment_to_zarr(args, image_path, out)
    from .labels import write_label
    from .scenes import SceneSession

    _check_output(out, args.overwrite, image_path)
    if out.suffix.lower() not in (".png", ".tif", ".tiff"):
        raise GLNetError(f"output {out} must end in .png, .tif, .tiff or .zarr")
    logits_path = Path(args.logits) if args.logits else None
    if logits_path is not None:
        _check_output(logits_path, args.overwrite, image_path)
        if logits_path.suffix != ".npy":
            raise GLNetError(f"--logits {logits_path} must end in .npy")
    region = _parse_region(args.region)
    image = _read_level0(image_path)
    seg = _segmenter(args)
    scenes = SceneSession(seg, image, args.scene_size, args.overlap)
    if len(scenes.grid) == 1:  # the core engine on the whole image (global mode: --logits are the global map)
        session = seg.open(np.asarray(image))
        _run_with_progress(session.run(region), f"{seg.mode} {image_path.name}")
        result = session.result(region)
    else:
        log.info("%dx%d image: %d scenes of %d px", *scenes.shape, len(scenes.grid), scenes.grid.scene)
        _run_with_progress((p for _, p in scenes.run(region)), f"{seg.mode} {image_path.name}")
        result = scenes.result(region)
    write_label(out, result.labels, seg.checkpoint.classes, color=args.color)
    if logits_path is not None:
        with atomic_write(logits_path) as f:
            np.save(f, result.logits.astype(np.float32, copy=False))
    print(f"wrote {out} ({result.labels.shape[1]}x{result.labels.shape[0]}, {seg.mode}, {seg.device.type})")
    if seg.coarse_to_fine is not None:
        print(f"coarse-to-fine: {result.patches_skipped} patch(es) skipped (global prediction used there)")
    return 0


def _read_level0(path: Path):
    from .readers import open_image

    return open_image(path).levels[0]


def _segment_to_zarr(args, image_path: Path, out: Path) -> int:
    from tqdm import tqdm

    from .stream import ModelSpec, segment_to_store

    if args.logits or args.color or args.region:
        raise GLNetError("--logits, --color and --region apply to .png/.tif output, not to a .zarr label store")
    spec = ModelSpec(
        args.weights, args.mode, args.global_weights, args.device, args.precision,
        args.batch_size, args.size_g, args.size_p, args.threads, _coarse_to_fine(args),
    )  # fmt: skip
    with tqdm(desc=f"segment {image_path.name}", unit="scene", disable=None) as bar:

        def progress(done: int, total: int) -> None:
            bar.total, bar.n = total, done
            bar.refresh()

        store = segment_to_store(
            spec, image_path, out, scene_size=args.scene_size, overlap=args.overlap, resume=args.resume,
            overwrite=args.overwrite, workers=args.workers, scheduler=args.scheduler, progress=progress,
            review=args.review,
        )  # fmt: skip
    print(f"wrote {out}/labels/{store.name} ({store.shape[1]}x{store.shape[0]}, {len(store.levels)} levels)")
    return 0


def _image_id(path: Path) -> str:
    stem = path.stem
    for suffix in ("_mask", "_pred", "_sat", "_label", "_labels"):
        stem = stem.removesuffix(suffix)
    return stem


def _mask_files(path: Path) -> dict[str, Path]:
    if path.is_file():
        return {_image_id(path): path}
    if not path.is_dir():
        raise GLNetError(f"not found: {path}")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".png", ".tif", ".tiff"))
    if not files:
        raise GLNetError(f"no .png/.tif masks in {path}")
    return {_image_id(p): p for p in files}


def cmd_evaluate(args) -> int:
    from .classes import DEEPGLOBE
    from .labels import read_label
    from .metrics import ConfusionMatrix, format_table

    exclude = tuple(int(v) for v in args.exclude.split(",") if v.strip()) if args.exclude else ()
    if args.pred is not None:
        if args.gt is None:
            raise GLNetError("--pred needs --gt")
        preds, gts = _mask_files(Path(args.pred)), _mask_files(Path(args.gt))
        if Path(args.pred).is_file() and Path(args.gt).is_file():
            pairs = [(next(iter(preds.values())), next(iter(gts.values())))]
        else:
            missing = sorted(set(gts) - set(preds))
            if missing:
                raise GLNetError(f"{len(missing)} ground-truth masks have no prediction, e.g. {missing[0]}")
            pairs = [(preds[k], gts[k]) for k in sorted(gts)]
        table = DEEPGLOBE
        masks = ((read_label(p, table), read_label(g, table), g) for p, g in pairs)
        n_classes = len(table)
    else:
        if not args.weights:
            raise GLNetError("--data needs --weights (and --mode for the authors' files)")
        from .imageio import read_image

        data = Path(args.data)
        images = sorted(data.glob("*_sat.jpg")) + sorted(data.glob("*_sat.png"))
        if not images:
            raise GLNetError(f"no *_sat.jpg images in {data}")
        seg = _segmenter(args)
        table = seg.checkpoint.classes
        n_classes = len(table)

        def run():
            for img_path in images:
                mask_path = img_path.with_name(img_path.name.replace("_sat" + img_path.suffix, "_mask.png"))
                if not mask_path.exists():
                    raise GLNetError(f"{img_path.name} has no ground truth {mask_path.name}")
                session = seg.open(read_image(img_path))
                _run_with_progress(session.run(None), img_path.name)
                yield session.result().labels, read_label(mask_path, table), mask_path

        masks = run()
    cm = ConfusionMatrix(n_classes, ignore_index=args.ignore_index)
    count = 0
    for pred, gt, name in masks:
        if pred.shape != gt.shape:
            raise GLNetError(f"{name}: prediction {pred.shape} and ground truth {gt.shape} differ in size")
        cm.update(gt, pred)
        count += 1
    scores = cm.scores(exclude=exclude)
    if args.json:
        out = scores.to_dict(table.names)
        out["images"] = count
        print(json.dumps(out, indent=2))
    else:
        print(format_table(scores, table.names))
        print(f"{count} image(s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return args.func(args)
    except GLNetError as e:
        print(f"glnet: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("glnet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
