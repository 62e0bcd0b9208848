"""The authors' evaluation pipeline restated literally, as a test oracle.

It follows the authors' evaluation (VITA-Group/GLNet, the public reference
code) step by step with plain torch ops: concatenations are materialised, every conv runs on them directly, the
global features are held for one image, the merge canvas is divided by the
resized full-resolution coverage template, every patch's ps3 is kept, and
scores are summed in float64 numpy, as the reference does.  It shares no
code with glnet's FPN, fusion, ensemble or engine modules (only the
ResNet trunk and the weights), so agreement is evidence, not tautology.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def seeded_weights(model, seed: int):
    """Deterministic weights that give varied predictions, for tests and
    benchmarks (the authors' init gives near-constant logits, which would make
    comparisons weak)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=gen) * (1.5 / p[0].numel()) ** 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05 + (1.0 if name.endswith("bn1.weight") else 0.0))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.05)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model.eval()


def up(x, size):
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def patch_info(length, p):
    n = 1
    while length > n * p:
        n += 1
    while n > 1 and p - 1.0 * (length - p) / (n - 1) < 50:
        n += 1
    step = (length - p) * 1.0 / (n - 1) if n > 1 else 0.0
    return n, step


def patch_grid(h, w, p):
    n_x, step_x = patch_info(h, p)
    n_y, step_y = patch_info(w, p)
    coords = []
    for x in range(n_x):
        top = int(np.round(x * step_x)) if x < n_x - 1 else h - p
        for y in range(n_y):
            left = int(np.round(y * step_y)) if y < n_y - 1 else w - p
            coords.append((top, left))
    return coords


def fpn_global_plain(f, c2, c3, c4, c5):
    p5 = f.toplayer(c5)
    p4 = up(p5, c4.shape[-2:]) + f.latlayer1(c4)
    p3 = up(p4, c3.shape[-2:]) + f.latlayer2(c3)
    p2 = up(p3, c2.shape[-2:]) + f.latlayer3(c2)
    ps0 = [p5, p4, p3, p2]
    ps1 = [f.smooth1_1(p5), f.smooth2_1(p4), f.smooth3_1(p3), f.smooth4_1(p2)]
    ps2 = [f.smooth1_2(ps1[0]), f.smooth2_2(ps1[1]), f.smooth3_2(ps1[2]), f.smooth4_2(ps1[3])]
    s = ps2[3].shape[-2:]
    ps3 = torch.cat([up(ps2[0], s), up(ps2[1], s), up(ps2[2], s), ps2[3]], 1)
    return f.classify(ps3), ps0, ps1, ps2, ps3


def fpn_global_ext(f, c, m):
    c2, c3, c4, c5 = c
    p5 = f.toplayer_ext(torch.cat((c5, m["c5"]), 1))
    p4 = up(p5, c4.shape[-2:]) + f.latlayer1_ext(torch.cat((c4, m["c4"]), 1))
    p3 = up(p4, c3.shape[-2:]) + f.latlayer2_ext(torch.cat((c3, m["c3"]), 1))
    p2 = up(p3, c2.shape[-2:]) + f.latlayer3_ext(torch.cat((c2, m["c2"]), 1))
    ps0 = [p5, p4, p3, p2]
    names = ["smooth1", "smooth2", "smooth3", "smooth4"]
    ps1 = [getattr(f, n + "_1_ext")(torch.cat((p, q), 1)) for n, p, q in zip(names, ps0, m["ps0"])]
    ps2 = [getattr(f, n + "_2_ext")(torch.cat((p, q), 1)) for n, p, q in zip(names, ps1, m["ps1"])]
    s = ps2[3].shape[-2:]
    cat = [torch.cat((p, q), 1) for p, q in zip(ps2, m["ps2"])]
    ps3 = f.smooth(torch.cat([up(cat[0], s), up(cat[1], s), up(cat[2], s), cat[3]], 1))
    return f.classify(ps3), ps3


def fpn_local(f, c, g):
    """g: dict of cropped global maps (lists for the ps stages)."""
    c2, c3, c4, c5 = c

    def cat(x, crop):
        return torch.cat([x, up(crop, x.shape[-2:])], 1)

    p5 = f.toplayer(cat(c5, g["c5"]))
    p4 = up(p5, c4.shape[-2:]) + f.latlayer1(cat(c4, g["c4"]))
    p3 = up(p4, c3.shape[-2:]) + f.latlayer2(cat(c3, g["c3"]))
    p2 = up(p3, c2.shape[-2:]) + f.latlayer3(cat(c2, g["c2"]))
    ps0 = [p5, p4, p3, p2]
    names = ["smooth1", "smooth2", "smooth3", "smooth4"]
    ps1 = [getattr(f, n + "_1")(cat(p, q)) for n, p, q in zip(names, ps0, g["ps0"])]
    ps2 = [getattr(f, n + "_2")(cat(p, q)) for n, p, q in zip(names, ps1, g["ps1"])]
    s = ps2[3].shape[-2:]
    cats = [cat(p, q) for p, q in zip(ps2, g["ps2"])]
    ps3 = f.smooth(torch.cat([up(cats[0], s), up(cats[1], s), up(cats[2], s), cats[3]], 1))
    return f.classify(ps3), ps0, ps1, ps2, ps3


def crop_global(fmap, fracs, ratio):
    _, _, H, W = fmap.shape
    h, w = int(np.round(H * ratio[0])), int(np.round(W * ratio[1]))
    out = []
    for top, left in fracs:
        t, l = int(np.round(top * H)), int(np.round(left * W))
        out.append(fmap[0, :, t : t + h, l : l + w])
    return torch.stack(out)


def evaluate(model, image: np.ndarray, mode: str, size_g=508, size_p=508, global_model=None, sub_batch=6):
    """Scores (C, H, W) float64 summed over patches, as the reference's eval_test."""
    H, W = image.shape[:2]
    dev = next(model.parameters()).device  # runs where the model is (CPU or CUDA)

    def to_t(a):
        return torch.from_numpy(np.array(a)).permute(2, 0, 1).float().div(255).to(dev)

    img_g = to_t(np.asarray(Image.fromarray(image).resize((size_g, size_g), Image.BILINEAR)))[None]
    with torch.no_grad():
        if mode == "global":
            logits = fpn_global_plain(model.fpn_global, *model.resnet_global(img_g))[0]
            return logits[0].double().cpu().numpy()
        gnet = global_model if mode == "local2global" else model
        _, gps0, gps1, gps2, gps3 = fpn_global_plain(gnet.fpn_global, *gnet.resnet_global(img_g))
        gc = gnet.resnet_global(img_g)
        coords = patch_grid(H, W, size_p)
        fracs = [(t / H, l / W) for t, l in coords]
        ratio = (size_p / H, size_p / W)
        C = model.ensemble_conv.out_channels
        predicted = np.zeros((len(coords), C, size_p, size_p))
        ps3_all = []
        merged = None
        for j in range(0, len(coords), sub_batch):
            fr = fracs[j : j + sub_batch]
            patches = torch.stack([to_t(image[t : t + size_p, l : l + size_p]) for t, l in coords[j : j + sub_batch]])
            g = {
                "c2": crop_global(gc[0], fr, ratio),
                "c3": crop_global(gc[1], fr, ratio),
                "c4": crop_global(gc[2], fr, ratio),
                "c5": crop_global(gc[3], fr, ratio),
                "ps0": [crop_global(f, fr, ratio) for f in gps0],
                "ps1": [crop_global(f, fr, ratio) for f in gps1],
                "ps2": [crop_global(f, fr, ratio) for f in gps2],
            }
            c = model.resnet_local(patches)
            _, ps0, ps1, ps2, ps3 = fpn_local(model.fpn_local, c, g)
            if mode == "global2local":
                g3 = up(crop_global(gps3, fr, ratio), ps3.shape[-2:])
                out = model.ensemble_conv(torch.cat((ps3, g3), 1))
                predicted[j : j + len(fr)] = F.interpolate(out, size=(size_p, size_p), mode="nearest").cpu().numpy()
            else:
                ps3_all.append(ps3)
                maps = list(c) + ps0 + ps1 + ps2
                gmaps = list(gc) + gps0 + gps1 + gps2
                if merged is None:
                    merged = [torch.zeros_like(m) for m in gmaps]
                for k, (lm, gm) in enumerate(zip(maps, gmaps)):
                    _, _, Hm, Wm = gm.shape
                    h, w = int(np.round(Hm * ratio[0])), int(np.round(Wm * ratio[1]))
                    for i, (ft, fl) in enumerate(fr):
                        t, l = int(np.round(Hm * ft)), int(np.round(Wm * fl))
                        merged[k][:, :, t : t + h, l : l + w] += up(lm[i : i + 1], (h, w))
        if mode == "local2global":
            template = np.zeros((H, W))
            for t, l in coords:
                template[t : t + size_p, l : l + size_p] += 1
            template = torch.Tensor(template)[None, None].to(dev)
            merged = [m / up(template, m.shape[-2:]).expand_as(m) for m in merged]
            m = {
                "c2": merged[0],
                "c3": merged[1],
                "c4": merged[2],
                "c5": merged[3],
                "ps0": merged[4:8],
                "ps1": merged[8:12],
                "ps2": merged[12:16],
            }
            _, ps3_g = fpn_global_ext(model.fpn_global, model.resnet_global(img_g), m)
            ps3_l = torch.cat(ps3_all)
            for j in range(0, len(coords), sub_batch):
                fl = ps3_l[j : j + sub_batch]
                fg = up(crop_global(ps3_g, fracs[j : j + sub_batch], ratio), fl.shape[-2:])
                out = model.ensemble_conv(torch.cat((fl, fg), 1))
                predicted[j : j + len(fl)] = F.interpolate(out, size=(size_p, size_p), mode="nearest").cpu().numpy()
    scores = np.zeros((C, H, W))
    for (t, l), pred in zip(coords, predicted):
        scores[:, t : t + size_p, l : l + size_p] += pred
    return scores
