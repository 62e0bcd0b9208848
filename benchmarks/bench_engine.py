"""Time GLNet on a DeepGlobe-size image: the engine against the authors' own
code and a naive loop, against the CPU's conv-throughput floor, with a profile.

    python benchmarks/bench_engine.py --authors-repo PATH/TO/GLNet --modes local2global --repeat 3
    python benchmarks/bench_engine.py --no-baseline --precisions fp32 bf16 --profile

Every run is its own process, so peak RSS is that run's alone.  With
``--repeat N`` the configurations run N times, interleaved (authors, naive,
glnet, authors, ...): every ratio compares runs made under the same machine
load, and the 1-minute load average is printed beside the times.

* **authors**: their ``Evaluator.eval_test`` (``authors_reference.py``, needs
  ``--authors-repo``, a checkout of VITA-Group/GLNet).
* **naive**: ``tests/helpers/reference.evaluate``, the authors' evaluation
  restated literally (one patch at a time, materialised concatenations,
  every ps3 kept, float64 score canvases): the reference the engine's labels
  must equal.
* **before**: ``Segmenter.segment`` of another checkout (``--before``, e.g.
  ``main``), imported from its ``src``: the before/after ratio.
* **glnet**: ``Segmenter.segment`` at the default batch size.

All of them load the same files, written here in the authors' layout with
deterministic untrained weights (``helpers.reference.seeded_weights``):
timings do not depend on the values, and the varied predictions make the
label agreement strict.

The floor: the engine's convolutions count the GFLOP (FlopCounterMode), the
CPU's conv GFLOP/s is the best of a few large convolutions timed in each
glnet process just before its run, and floor = GFLOP / (GFLOP/s); the
engine's efficiency is floor / its time.  ``--profile`` runs the engine once
more and splits its time and FLOPs by component.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the test oracle: the authors' evaluation restated (tests/helpers)
DEFAULT_IMAGE = REPO.parent / "shared" / "data" / "deepglobe_unlabeled" / "118757_sat.jpg"
# (input, weight) of large convolutions of the model, channels-last, batch 4: the CPU's conv throughput
PEAK_CONVS = [
    ((4, 256, 127, 127), (256, 256, 3, 3)),
    ((4, 512, 32, 32), (512, 512, 3, 3)),
    ((4, 256, 64, 64), (1024, 256, 1, 1)),
]


def load_avg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0]) if Path("/proc/loadavg").exists() else float("nan")


def conv_peak(precision: str) -> float:
    """Best GFLOP/s of the PEAK_CONVS in this process (fp32 or under bf16/fp16 autocast)."""
    import torch
    import torch.nn.functional as F

    from glnet.runtime import autocast

    best = 0.0
    with torch.inference_mode(), autocast(torch.device("cpu"), precision):
        for x_shape, w_shape in PEAK_CONVS:
            x = torch.randn(x_shape).contiguous(memory_format=torch.channels_last)
            w = torch.randn(w_shape).contiguous(memory_format=torch.channels_last)
            flop = 2 * x_shape[0] * x_shape[2] * x_shape[3] * w_shape[0] * w_shape[1] * w_shape[2] * w_shape[3]
            F.conv2d(x, w, padding=w_shape[-1] // 2)
            for _ in range(3):
                t0 = time.perf_counter()
                F.conv2d(x, w, padding=w_shape[-1] // 2)
                best = max(best, flop / (time.perf_counter() - t0) / 1e9)
    return best


def native(precision: str) -> bool:
    from glnet.runtime import cpu_has_native_bf16, cpu_has_native_fp16

    return cpu_has_native_bf16() if precision == "bf16" else cpu_has_native_fp16()


def load_models(args):
    from glnet.checkpoint import load_checkpoint

    weights = args.global_weights if args.mode == "global" else args.weights
    return load_checkpoint(weights, mode=args.mode, global_path=args.global_weights)


def run_one(args) -> dict:
    """One configuration, in this (child) process."""
    from glnet.io.imageio import read_image
    from glnet.runtime import set_threads

    set_threads(args.threads)
    result = {"mode": args.mode, "impl": args.impl, "precision": args.precision, "load_before": load_avg()}
    if (
        args.impl != "authors"
        and args.precision in ("bf16", "fp16")
        and not args.emulated
        and not native(args.precision)
    ):
        # oneDNN emulates it on this CPU, several times slower than fp32: not worth the minutes
        print(f"{args.precision} is emulated on this CPU: skipped (--emulated runs it)", file=sys.stderr)
        nan = float("nan")
        return {**result, "seconds": nan, "peak_rss_mb": nan, "load_after": nan, "conv_peak_gflops": nan}
    if args.impl == "authors":
        labels = Path(args.save_labels)
        weights = args.global_weights if args.mode == "global" else args.weights
        cmd = [sys.executable, str(REPO / "benchmarks" / "authors_reference.py"), "--reference-repo", args.authors_repo]
        cmd += ["--image", args.image, "--mode", args.mode, "--weights", weights, "--threads", str(args.threads)]
        cmd += ["--out", str(labels), "--json"]
        if args.mode == "local2global":
            cmd += ["--global-weights", args.global_weights]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"the authors' code failed:\n{out.stderr[-3000:]}")
        theirs = json.loads(out.stdout.strip().splitlines()[-1])
        result.update(seconds=theirs["seconds"][0], peak_rss_mb=theirs["peak_rss_mb"])
        result["load_after"] = load_avg()
        return result

    import torch

    image = read_image(args.image)
    ckpt = load_models(args)
    if args.impl == "naive":
        from helpers.reference import evaluate

        t0 = time.perf_counter()
        with torch.inference_mode():
            scores = evaluate(ckpt.model, image, args.mode, global_model=ckpt.global_model, sub_batch=1)
        labels = scores.argmax(0) if args.mode != "global" else None
    else:
        from glnet.inference.engine import Segmenter

        # preparing the model (BatchNorm folding, channels-last) happens once per Segmenter, not per image
        seg = Segmenter(ckpt, device="cpu", precision=args.precision, batch_size=args.batch_size)
        result["conv_peak_gflops"] = conv_peak(seg.precision)
        t0 = time.perf_counter()
        labels = seg.segment(image).labels
    result["seconds"] = time.perf_counter() - t0
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["load_after"] = load_avg()
    if labels is not None:
        np.save(args.save_labels, labels.astype(np.uint8))
    return result


# -- FLOPs and the profile -------------------------------------------------
COMPONENTS = [  # (component, function names that must all be on the Python stack), first match wins
    ("global branch, 2nd pass (local2global)", {"_refine", "refine_global"}),
    ("ensemble, global half", {"_global_part"}),
    ("global branch, 1st pass", {"_ctx"}),
    ("overview logits", {"global_logits"}),
    ("L->G merge of local maps", {"add_stage"}),
    ("ensemble, local half + border", {"local_part"}),
    ("local ResNet", {"_local_batch", "ResNet.forward"}),
    ("local FPN (with G->L crops)", {"_local_batch", "stages"}),
    ("patches in, G->L crops", {"_local_batch"}),
]


def _component(frame) -> str:
    names = set()
    while frame is not None:
        code = frame.f_code
        names.add(code.co_name)
        if code.co_name == "forward" and "self" in frame.f_locals:
            names.add(f"{type(frame.f_locals['self']).__name__}.forward")
        frame = frame.f_back
    return next((name for name, need in COMPONENTS if need <= names), "other torch ops")


def count_and_profile(args) -> dict:
    """Conv/matmul GFLOP of one engine run (fp32), and per component: op seconds and GFLOP."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    from glnet.inference.engine import Segmenter
    from glnet.io.imageio import read_image
    from glnet.runtime import set_threads

    set_threads(args.threads)
    aten = torch.ops.aten
    convs = (aten.conv1d, aten.conv2d, aten.convolution)  # inference mode dispatches conv2d itself

    def conv_flop(x, weight, *rest, out_val, **kw):
        return 2 * out_val.numel() * weight[0].numel()

    formulas = {**flop_registry, aten.addmm_: flop_registry[aten.addmm], aten.baddbmm_: flop_registry[aten.baddbmm]}
    formulas.update(dict.fromkeys(convs, conv_flop))
    seconds, gflop = defaultdict(float), defaultdict(float)
    conv = [0.0, 0.0]  # conv GFLOP, other matmul GFLOP

    class Counter(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, a=(), kw=None):
            kw = kw or {}
            t0 = time.perf_counter()
            out = func(*a, **kw)
            dt = time.perf_counter() - t0
            name = _component(sys._getframe(1))
            seconds[name] += dt
            formula = formulas.get(func._overloadpacket)
            if formula is not None:
                f = formula(*a, **kw, out_val=out) / 1e9
                gflop[name] += f
                conv[0 if func._overloadpacket in convs else 1] += f
            return out

    image = read_image(args.image)
    seg = Segmenter(load_models(args), device="cpu", batch_size=args.batch_size)
    t0 = time.perf_counter()
    with Counter():
        session = seg.open(image)
        for _ in session.run():
            pass
    t1 = time.perf_counter()
    session.result()
    seconds["compose + argmax (numpy)"] = time.perf_counter() - t1
    total = time.perf_counter() - t0
    seconds["Python between ops"] = total - sum(seconds.values())
    rows = [{"component": k, "seconds": v, "gflop": gflop.get(k, 0.0)} for k, v in seconds.items()]
    return {"conv_gflop": conv[0], "matmul_gflop": conv[1], "profile": rows, "profiled_seconds": total}


# -- the parent --------------------------------------------------------------
def _child(args, **extra) -> dict:
    cmd = [sys.executable, __file__, "--image", args.image, "--threads", str(args.threads)]
    cmd += ["--batch-size", str(args.batch_size), "--weights", str(args.weights)]
    cmd += ["--global-weights", str(args.global_weights)]
    if args.authors_repo:
        cmd += ["--authors-repo", args.authors_repo]
    if args.emulated:
        cmd += ["--emulated"]
    for k, v in extra.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)] if v is not True else [f"--{k.replace('_', '-')}"]
    env = dict(os.environ)
    if extra.get("impl") == "before":  # the other version's glnet comes first on the path
        env["PYTHONPATH"] = os.pathsep.join([str(Path(args.before) / "src"), env.get("PYTHONPATH", "")])
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"{extra} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _write_weights(folder: Path) -> tuple[Path, Path]:
    """A global and a local checkpoint in the authors' layout (718 keys, ``module.`` prefix)."""
    from glnet.model import GLNet, GLNetConfig

    from helpers import save_authors_layout
    from helpers.reference import seeded_weights

    g = save_authors_layout(seeded_weights(GLNet(GLNetConfig(7)), 10), folder / "global.pth")
    m = save_authors_layout(seeded_weights(GLNet(GLNetConfig(7)), 11), folder / "model.pth")
    return g, m


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", default=str(DEFAULT_IMAGE))
    p.add_argument("--modes", nargs="+", default=["local2global"], choices=["global", "global2local", "local2global"])
    p.add_argument("--precisions", nargs="+", default=["fp32"], help="engine precisions (fp32 bf16 fp16 auto)")
    p.add_argument("--authors-repo", help="checkout of VITA-Group/GLNet: also time the authors' own code")
    p.add_argument(
        "--before",
        help="a checkout of another version (e.g. `git worktree add /tmp/before main`): also time its engine",
    )
    p.add_argument("--no-baseline", action="store_true", help="skip the naive loop (the reference for the labels)")
    p.add_argument("--repeat", type=int, default=1, help="rounds of interleaved runs (default 1)")
    p.add_argument("--profile", action="store_true", help="also split one engine run by component")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--emulated", action="store_true", help="also run bf16/fp16 where this CPU only emulates them")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--json", help="also write all runs and summaries to this file")
    # internal: one configuration in a child process
    for name in ("--mode", "--impl", "--precision", "--save-labels", "--weights", "--global-weights"):
        p.add_argument(name, help=argparse.SUPPRESS)
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--count", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(run_one(args)))
        return
    if args.count:
        print(json.dumps(count_and_profile(args)))
        return

    tmp = Path(tempfile.mkdtemp(prefix="bench_engine_"))
    args.global_weights, args.weights = _write_weights(tmp)
    configs = []
    for mode in args.modes:
        configs += [(mode, "authors", "fp32")] if args.authors_repo else []
        configs += [] if args.no_baseline else [(mode, "naive", "fp32")]
        configs += [(mode, "before", "fp32")] if args.before else []
        configs += [(mode, "glnet", prec) for prec in args.precisions]
    runs = []
    for r in range(args.repeat):
        for mode, impl, prec in configs:
            labels = tmp / f"{mode}-{impl}-{prec}.npy"
            row = _child(args, one=True, mode=mode, impl=impl, precision=prec, save_labels=labels)
            row["round"] = r
            runs.append(row)
            print(
                f"  round {r + 1}: {mode} {impl} {prec}: {row['seconds']:.2f} s, {row['peak_rss_mb']:.0f} MB, "
                f"load {row['load_before']:.1f}-{row['load_after']:.1f}",
                file=sys.stderr,
                flush=True,
            )
    counts = {
        mode: _child(args, count=True, mode=mode) for mode in args.modes if args.profile or "fp32" in args.precisions
    }
    summary = summarise(runs, configs, counts, tmp)
    print_tables(summary, counts, args)
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "summary": summary, "counts": counts}, indent=2))


def summarise(runs, configs, counts, tmp: Path) -> list[dict]:
    def seconds_of(mode, impl, prec, r):
        return next(
            (x["seconds"] for x in runs if (x["mode"], x["impl"], x["precision"], x["round"]) == (mode, impl, prec, r)),
            None,
        )

    out = []
    rounds = sorted({x["round"] for x in runs})
    for mode, impl, prec in configs:
        mine = [x for x in runs if (x["mode"], x["impl"], x["precision"]) == (mode, impl, prec)]
        row = {
            "mode": mode,
            "impl": impl,
            "precision": prec,
            "seconds": _median([x["seconds"] for x in mine]),
            "seconds_all": [round(x["seconds"], 2) for x in mine],
            "peak_rss_mb": max(x["peak_rss_mb"] for x in mine),
            "load": [round(x["load_before"], 1) for x in mine],
        }
        for base in ("authors", "naive", "before"):  # per round, then the median: ratios under the same load
            ratios = [
                seconds_of(mode, base, "fp32", r) / seconds_of(mode, impl, prec, r)
                for r in rounds
                if seconds_of(mode, base, "fp32", r) and seconds_of(mode, impl, prec, r)
            ]
            row[f"speedup_vs_{base}"] = _median(ratios)
        if impl in ("glnet", "before"):
            peaks = [x["conv_peak_gflops"] for x in mine]
            row["conv_peak_gflops"] = _median(peaks)
            gflop = counts.get(mode, {}).get("conv_gflop")
            if gflop and prec == "fp32":
                row["conv_gflop"] = gflop
                row["floor_s"] = gflop / row["conv_peak_gflops"]
                row["floor_fraction"] = _median([gflop / x["conv_peak_gflops"] / x["seconds"] for x in mine])
        labels = tmp / f"{mode}-{impl}-{prec}.npy"
        refs = [(name, tmp / f"{mode}-{name}-fp32.npy") for name in ("authors", "naive")]
        for ref_name, ref in [*refs, ("fp32", tmp / f"{mode}-glnet-fp32.npy")]:
            if labels.exists() and ref.exists() and ref != labels:
                row[f"equal_to_{ref_name}"] = float((np.load(labels) == np.load(ref)).mean())
        out.append(row)
    return out


def print_tables(summary, counts, args) -> None:
    def pct(v):
        return f"{100 * v:.3f}%" if v is not None else "-"

    def ratio(v):
        return f"{v:.2f}x" if v else "-"

    print(f"image {Path(args.image).name}, {args.threads} threads, batch {args.batch_size}, {args.repeat} round(s)")
    print(
        "| mode | implementation | precision | s / image (median) | all runs | load | peak RSS MB | vs authors "
        "| vs naive | vs before | labels = authors | labels = naive | labels = our fp32 |"
    )
    print("|" + "---|" * 13)
    for r in summary:
        print(
            f"| {r['mode']} | {r['impl']} | {r['precision']} | {r['seconds']:.2f} | {', '.join(map(str, r['seconds_all']))} | "
            f"{', '.join(map(str, r['load']))} | {r['peak_rss_mb']:.0f} | {ratio(r['speedup_vs_authors'])} | "
            f"{ratio(r['speedup_vs_naive'])} | {ratio(r['speedup_vs_before'])} | {pct(r.get('equal_to_authors'))} | {pct(r.get('equal_to_naive'))} | "
            f"{pct(r.get('equal_to_fp32'))} |"
        )
    floors = [r for r in summary if "floor_s" in r]
    if floors:
        print()
        print("| mode | conv GFLOP | conv peak GFLOP/s (median) | floor s | engine s | floor / engine |")
        print("|---|---|---|---|---|---|")
        for r in floors:
            print(
                f"| {r['mode']} | {r['conv_gflop']:.0f} | {r['conv_peak_gflops']:.0f} | {r['floor_s']:.2f} | "
                f"{r['seconds']:.2f} | {100 * r['floor_fraction']:.0f}% |"
            )
    if args.profile:
        for mode, c in counts.items():
            print()
            print(
                f"profile, {mode} fp32 (op times inside a dispatch-mode counter: {c['profiled_seconds']:.2f} s in all)"
            )
            print("| component | s | GFLOP | GFLOP/s |")
            print("|---|---|---|---|")
            for row in sorted(c["profile"], key=lambda x: -x["seconds"]):
                rate = f"{row['gflop'] / row['seconds']:.0f}" if row["gflop"] and row["seconds"] > 0 else "-"
                print(f"| {row['component']} | {row['seconds']:.2f} | {row['gflop']:.0f} | {rate} |")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
