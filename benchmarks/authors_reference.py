#!/usr/bin/env python
"""Run the GLNet authors' own evaluation code on the CPU, as a baseline.

Two uses: (a) time the authors' ``helper.Evaluator.eval_test`` on one image,
the baseline for napari-glnet's speed claims, and (b) save its prediction so
ours can be compared with it pixel for pixel.

Nothing of the authors' code is copied here: it is imported from the
checkout named by ``--reference-repo`` (https://github.com/VITA-Group/GLNet).
Their code is from the PyTorch 0.4 era and assumes CUDA, torchvision and
OpenCV, so before importing it this script installs, in this process only:

* a stand-in ``torchvision`` with the few pieces they use
  (``transforms.ToTensor``, ``transforms.Compose`` and
  ``transforms.functional.crop/rotate/hflip``), written with PIL and numpy
  to behave as torchvision's do on PIL images;
* a stand-in ``cv2`` whose ``GaussianBlur`` raises (only their training
  helper ``one_hot_gaussian_blur`` uses it);
* ``torch.Tensor.cuda`` and ``nn.Module.cuda`` as no-ops, so their
  ``.cuda()`` calls leave everything on the CPU;
* ``torch.load`` defaulting to ``map_location="cpu"`` (their calls have
  none, and the released checkpoints were saved from GPU tensors);
* ``models.resnet.model_zoo`` replaced by one whose ``load_url`` returns
  ``{}``, so ``resnet50(True)`` builds without downloading ImageNet weights
  (they are overwritten by the checkpoint anyway).

``nn.DataParallel`` needs no shim: with no GPU it keeps the module as
``.module`` and its forward calls the module directly.

Then it does what their ``train_deep_globe.py --evaluation`` does for one
image: ``create_model_load_weights(...)``, ``model.eval()``, and
``Evaluator(...).eval_test(sample, model, global_fixed)`` under
``torch.no_grad()``, with ``test=False`` (no flip/rotation averaging, as in
their validation) and an all-zero label (it only feeds their metrics).

Usage::

    python benchmarks/authors_reference.py --reference-repo /path/to/GLNet \\
        --image IMAGE --mode local2global --weights fpn_deepglobe_local2global.pth \\
        --global-weights fpn_deepglobe_global.pth --threads 2 --out pred.npy

The time reported is ``eval_test`` alone (image decoding and model
construction/loading are reported separately); peak RSS is the process's
``ru_maxrss``, i.e. it includes the models.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import types

import numpy as np

MODES = {"global": 1, "global2local": 2, "local2global": 3}
N_CLASS = 7  # DeepGlobe land cover, as in their eval_deep_globe.sh


# -- shims ------------------------------------------------------------------
def _fake_torchvision():
    """torchvision.transforms as the authors use it, for PIL images."""
    import torch
    from PIL import Image

    def to_tensor(pic):
        # torchvision's ToTensor: HWC (or HW) -> CHW float; uint8 is scaled by 1/255.
        arr = np.array(pic, copy=True)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        t = torch.from_numpy(arr.transpose(2, 0, 1)).contiguous()
        if t.dtype == torch.uint8:
            return t.float().div(255)
        return t.float()

    class ToTensor:
        def __call__(self, pic):
            return to_tensor(pic)

        def __repr__(self):
            return "ToTensor()"

    class Compose:
        def __init__(self, transforms):
            self.transforms = transforms

        def __call__(self, img):
            for t in self.transforms:
                img = t(img)
            return img

    def crop(img, top, left, height, width):
        return img.crop((left, top, left + width, top + height))

    def rotate(img, angle, resample=False, expand=False, center=None):
        # torchvision 0.2: img.rotate(angle, resample, expand, center); resample=False is NEAREST
        return img.rotate(angle, resample or Image.NEAREST, expand, center)

    def hflip(img):
        return img.transpose(Image.FLIP_LEFT_RIGHT)

    tv = types.ModuleType("torchvision")
    tv.__path__ = []  # a package, so "from torchvision import transforms" works
    tr = types.ModuleType("torchvision.transforms")
    tr.__path__ = []
    fn = types.ModuleType("torchvision.transforms.functional")
    fn.to_tensor, fn.crop, fn.rotate, fn.hflip = to_tensor, crop, rotate, hflip
    tr.ToTensor, tr.Compose, tr.functional = ToTensor, Compose, fn
    tv.transforms = tr
    return {"torchvision": tv, "torchvision.transforms": tr, "torchvision.transforms.functional": fn}


def _fake_cv2():
    cv2 = types.ModuleType("cv2")

    def GaussianBlur(*args, **kwargs):
        raise NotImplementedError("cv2 is shimmed out: GaussianBlur is only used in the authors' training code")

    cv2.GaussianBlur = GaussianBlur
    return cv2


def install_cpu_shims():
    """Make the authors' CUDA/torchvision/cv2 code importable and runnable on a CPU."""
    import torch
    import torch.nn as nn

    sys.modules.update(_fake_torchvision())
    sys.modules["cv2"] = _fake_cv2()

    def _stay(self, *args, **kwargs):
        return self

    torch.Tensor.cuda = _stay
    nn.Module.cuda = _stay

    real_load = torch.load

    def load_on_cpu(f, *args, **kwargs):
        if not args and "map_location" not in kwargs:
            kwargs["map_location"] = "cpu"
        return real_load(f, *args, **kwargs)

    torch.load = load_on_cpu


def import_reference(repo: str):
    """Import the authors' helper (and through it their models) from ``repo``."""
    repo = os.path.abspath(repo)
    if not os.path.isfile(os.path.join(repo, "helper.py")):
        sys.exit(f"{repo} does not look like the GLNet repository (no helper.py)")
    # their modules import each other as top-level "helper", "models", "utils"
    for name in [m for m in sys.modules if m.split(".")[0] in ("helper", "models", "utils")]:
        del sys.modules[name]
    sys.path.insert(0, repo)
    import helper
    import models.resnet as ref_resnet

    for mod in (helper, ref_resnet):
        if not os.path.abspath(mod.__file__).startswith(repo + os.sep):
            sys.exit(f"imported {mod.__name__} from {mod.__file__}, not from {repo}")
    ref_resnet.model_zoo = types.SimpleNamespace(load_url=lambda *args, **kwargs: {})
    return helper


def _rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    cur = float("nan")
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    cur = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return cur, peak


# -- main -------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference-repo", required=True, help="checkout of the authors' GLNet code")
    p.add_argument("--image", required=True, help="RGB image to segment")
    p.add_argument("--mode", required=True, choices=list(MODES))
    p.add_argument("--weights", required=True, help="authors' state_dict for --mode")
    p.add_argument("--global-weights", help="authors' global state_dict (local2global's fixed global branch)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--out", help="save the prediction here as a uint8 (H, W) .npy")
    p.add_argument("--size", type=int, default=508, help="size_g = size_p (default 508, as in their scripts)")
    p.add_argument("--repeat", type=int, default=1, help="run eval_test this many times; all timings are printed")
    p.add_argument("--json", action="store_true", help="end with one JSON line: seconds (each run), peak RSS MB")
    a = p.parse_args(argv)
    if a.mode == "local2global" and not a.global_weights:
        p.error("--mode local2global needs --global-weights (their fixed global branch)")
    if a.repeat < 1 or a.threads < 1:
        p.error("--repeat and --threads must be at least 1")
    return a


def main(argv=None) -> int:
    args = parse_args(argv)
    install_cpu_shims()

    import torch
    from PIL import Image

    torch.set_num_threads(args.threads)
    helper = import_reference(args.reference_repo)
    mode = MODES[args.mode]

    t0 = time.perf_counter()
    image = Image.open(args.image).convert("RGB")
    image.load()
    t_image = time.perf_counter() - t0

    t0 = time.perf_counter()
    paths = {"path_g": None, "path_g2l": None, "path_l2g": None}
    if mode == 1:
        paths["path_g"] = args.weights
    elif mode == 2:
        paths["path_g2l"] = args.weights
    else:
        paths["path_l2g"], paths["path_g"] = args.weights, args.global_weights
    model, global_fixed = helper.create_model_load_weights(N_CLASS, mode=mode, evaluation=True, **paths)
    model.eval()  # as their train_deep_globe.py does before evaluating
    t_model = time.perf_counter() - t0
    _, peak_after_load = _rss_mb()

    size = (args.size, args.size)
    evaluator = helper.Evaluator(N_CLASS, size, size, sub_batch_size=6, mode=mode, test=False)
    sample = {"image": [image], "label": [Image.new("L", image.size, 0)], "id": ["x"]}

    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        with torch.no_grad():
            predictions, predictions_global, _ = evaluator.eval_test(sample, model, global_fixed)
        times.append(time.perf_counter() - t0)
    _, peak = _rss_mb()
    key_report = []
    # their loader keeps only keys the model has and silently ignores the rest: say if anything was missed
    for path, net in ((args.weights, model), (args.global_weights if mode == 3 else None, global_fixed)):
        if path is None:
            continue
        have = set(torch.load(path).keys())
        want = set(net.state_dict().keys())
        if mode == 1 or net is global_fixed:  # they load a global file without its "local" keys
            want = {k for k in want if "local" not in k}
        missing = sorted(want - have)
        if missing:
            print(
                f"WARNING: {path} lacks {len(missing)} of the {len(want)} keys the authors' model loads "
                f"from it (e.g. {missing[0]}); those keep their random init",
                file=sys.stderr,
            )
        key_report.append(f"{os.path.basename(path)}: {len(want) - len(missing)}/{len(want)} keys loaded")

    pred = predictions_global[0] if mode == 1 else predictions[0]
    pred = np.asarray(pred)
    assert pred.shape == (image.size[1], image.size[0]), pred.shape
    pred = pred.astype(np.uint8)
    if args.out:
        np.save(args.out, pred)

    counts = np.bincount(pred.ravel(), minlength=N_CLASS)
    print(
        f"authors' GLNet ({os.path.abspath(args.reference_repo)}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s), image {image.size[0]}x{image.size[1]}, size_g=size_p={args.size}"
    )
    print("weights: " + "; ".join(key_report))
    print(
        f"image decode {t_image:.2f} s, model build+load {t_model:.2f} s, peak RSS after load {peak_after_load:.0f} MB"
    )
    print(f"{'mode':<14} {'seconds/image':>14} {'peak RSS MB':>12}")
    print(f"{args.mode:<14} {min(times):>14.2f} {peak:>12.0f}")
    if args.repeat > 1:
        print("all timings: " + ", ".join(f"{t:.2f}" for t in times))
    print("class histogram: " + " ".join(f"{c}:{n}" for c, n in enumerate(counts)))
    if args.out:
        print(f"saved {args.out} (uint8 {pred.shape[0]}x{pred.shape[1]})")
    if args.json:
        print(json.dumps({"seconds": times, "peak_rss_mb": peak, "model_load_s": t_model}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
