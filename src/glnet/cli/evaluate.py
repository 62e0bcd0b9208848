"""``glnet evaluate``: per-class IoU of masks against ground truth, or of a
model over a DeepGlobe-layout folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from glnet.cli.common import add_model_args, model_spec, run_with_progress
from glnet.errors import GLNetError

EXAMPLES = """examples:
  # compare prediction masks with ground truth (files or folders, paired by image id)
  glnet evaluate --pred preds/ --gt masks/ --exclude 0
  # run a model over a DeepGlobe-layout folder (*_sat.jpg + *_mask.png)
  glnet evaluate --data deepglobe/val --mode global2local --weights fpn_deepglobe_global2local.pth --json
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="per-class IoU of predictions against ground truth",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pred", help="predicted mask file or folder (needs --gt)")
    src.add_argument("--data", help="DeepGlobe-layout folder: run the model on *_sat.jpg, score against *_mask.png")
    p.add_argument("--gt", help="ground-truth mask file or folder")
    p.add_argument("--exclude", default="", help="class ids left out of the means, e.g. 0 (the DeepGlobe protocol)")
    p.add_argument("--ignore-index", type=int, help="ground-truth value to skip (e.g. 255)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_model_args(p, required=False)
    p.set_defaults(func=run)


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


def run(args: argparse.Namespace) -> int:
    from glnet.classes import DEEPGLOBE
    from glnet.io.imageio import read_image
    from glnet.io.labels import read_label
    from glnet.metrics import ConfusionMatrix, format_table

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
        data = Path(args.data)
        images = sorted(data.glob("*_sat.jpg")) + sorted(data.glob("*_sat.png"))
        if not images:
            raise GLNetError(f"no *_sat.jpg images in {data}")
        seg = model_spec(args).load()
        table = seg.checkpoint.classes
        n_classes = len(table)

        def run_model():
            nonlocal seg
            for img_path in images:
                mask_path = img_path.with_name(img_path.name.replace("_sat" + img_path.suffix, "_mask.png"))
                if not mask_path.exists():
                    raise GLNetError(f"{img_path.name} has no ground truth {mask_path.name}")
                image = read_image(img_path)
                labels: list[np.ndarray] = []

                def segment(s, image=image, labels=labels):
                    session = s.open(image)
                    yield from session.run(None)
                    labels.append(session.result().labels)

                seg = run_with_progress(seg, segment, img_path.name)
                yield labels[-1], read_label(mask_path, table), mask_path

        masks = run_model()
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
