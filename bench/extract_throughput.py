"""End-to-end extraction throughput: camjax vs an equivalent PyTorch pipeline.

    python bench/extract_throughput.py                   # 2,000 JPEGs, camjax 1, 4 and 8 devices
    python bench/extract_throughput.py --num-images 300  # a quick look

Both pipelines read the same generated JPEGs of mixed sizes (640x480 to 2048x1536),
decode and resize them to 224 (PIL, bilinear, antialiased), run EfficientNet-Lite0 with
the same ImageNet weights, take the top-5 CAMs, box each at 20% of its max (largest
8-connected component), and write JSON Lines records plus float16 feature-resolution maps
every 1,000 images. camjax: ``camjax.bulk.extract_to`` (threads decode, one jitted
program over the local devices, boxes in the same program), with XLA's grouped convolution
("native") or camjax's opt-in CPU depthwise ("shifted", :mod:`camjax.cpu`). PyTorch: a
DataLoader with 2 worker processes (PIL decode, same resize), the torch EfficientNet-Lite0 of
tests/test_efficientnet.py with the released weights, torchcam-style CAM (classifier
weights times the last feature map, ``F.interpolate`` bilinear to 224, min-max), OpenCV
``connectedComponentsWithStats`` boxes. Both decoders use Pillow's JPEG draft mode when
``--draft`` is given to the PyTorch side (camjax always uses it).

Each pipeline runs in its own process (the device count is fixed at JAX start-up), one
warm-up pass on 64 images first (compilation, weight loading), then the timed pass.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SIZES = [(640, 480), (1024, 768), (800, 800), (500, 375), (1600, 1200), (2048, 1536), (480, 640)]


def make_jpegs(folder: str, n: int) -> str:
    """``n`` JPEGs of mixed sizes (kept between runs in ``folder``)."""
    from PIL import Image, ImageDraw

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        path = os.path.join(folder, f"img{i:06d}.jpg")
        if os.path.exists(path):
            continue
        w, h = SIZES[i % len(SIZES)]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        base = np.stack([xx / w * 200, yy / h * 200, (xx + yy) / (w + h) * 120], -1)
        img = Image.fromarray(base.astype(np.uint8))
        d = ImageDraw.Draw(img)
        for _ in range(3):
            x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
            fill = tuple(int(c) for c in rng.integers(0, 255, 3))
            d.ellipse([x0, y0, x0 + w // 3, y0 + h // 3], fill=fill)
        img.save(path, quality=90)
    return folder


def run_camjax(images: str, out: str, batch: int, depthwise: str) -> dict:
    import dataclasses

    from camjax import cpu
    from camjax.bulk import extract_to
    from camjax.evaluation.loading import load_named

    loaded = load_named("efficientnet_lite0_gap")
    if depthwise == "shifted":
        loaded = dataclasses.replace(loaded, model=cpu.shifted_depthwise(loaded.model))
    files = sorted(os.listdir(images))
    warm = tempfile.mkdtemp()
    with open(os.path.join(warm, "list.txt"), "w") as f:
        f.write("".join(os.path.join(images, x) + "\n" for x in files[:64]))
    extract_to(loaded, [], os.path.join(warm, "o"), lists=[os.path.join(warm, "list.txt")],
               batch_size=batch, progress=False, shard_size=1000)  # fmt: skip
    t0 = time.perf_counter()
    s = extract_to(loaded, [images], out, batch_size=batch, progress=False, shard_size=1000)
    dt = time.perf_counter() - t0
    import jax

    return {"images": s["num_images"], "seconds": dt, "devices": jax.local_device_count()}


def run_torch(images: str, out: str, batch: int, draft: bool) -> dict:
    import cv2
    import torch
    import torch.nn.functional as F
    from PIL import Image

    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from test_efficientnet import _TorchLite0

    from camjax.pretrained import WEIGHTS, load_state_dict

    torch.set_num_threads(os.cpu_count() or 2)
    net = _TorchLite0().eval()
    state = load_state_dict(WEIGHTS["efficientnet_lite0_gap"].path())
    net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    names = WEIGHTS["efficientnet_lite0_gap"].class_names()
    files = [os.path.join(images, f) for f in sorted(os.listdir(images))]

    class Files(torch.utils.data.Dataset):
        def __init__(self, paths):
            self.paths = paths

        def __len__(self):
            return len(self.paths)

        def __getitem__(self, i):
            with Image.open(self.paths[i]) as im:
                size = im.size
                if draft:
                    im.draft("RGB", (448, 448))
                x = im.convert("RGB").resize((224, 224), Image.BILINEAR)
            x = (torch.from_numpy(np.asarray(x, np.float32)) - 127.0) / 128.0
            return x.permute(2, 0, 1), torch.tensor([size[1], size[0]]), i

    def boxes_of(maps):  # [k, 224, 224] -> [k, 4] largest 8-connected component's box
        out = []
        for m in maps:
            kept = (m >= 0.2 * m.max()).astype(np.uint8)
            n, _, stats, _ = cv2.connectedComponentsWithStats(kept, connectivity=8)
            if n < 2:
                out.append([0, 0, 0, 0])
                continue
            j = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
            x, y, w, h = stats[j, :4]
            out.append([int(x), int(y), int(x + w - 1), int(y + h - 1)])
        return out

    def one_pass(paths, dest):
        os.makedirs(dest, exist_ok=True)
        loader = torch.utils.data.DataLoader(Files(paths), batch_size=batch, num_workers=2)
        lines, maps_acc, shard = [], [], 0
        w_fc = net._fc.weight
        with torch.no_grad():
            for x, hw, idx in loader:
                logits, f = net(x)
                probs, ids = logits.softmax(-1).topk(5, dim=-1)
                cams = torch.einsum("bkc,bchw->bkhw", w_fc[ids], f)
                lo = cams.amin((2, 3), keepdim=True)
                hi = cams.amax((2, 3), keepdim=True)
                small = (cams - lo) / (hi - lo).clamp_min(1e-12)
                big = F.interpolate(cams, size=(224, 224), mode="bilinear", align_corners=False)
                lo, hi = big.amin((2, 3), keepdim=True), big.amax((2, 3), keepdim=True)
                big = ((big - lo) / (hi - lo).clamp_min(1e-12)).numpy()
                for b in range(len(idx)):
                    bx = boxes_of(big[b])
                    lines.append(json.dumps({
                        "index": int(idx[b]), "path": paths[int(idx[b])],
                        "height": int(hw[b, 0]), "width": int(hw[b, 1]),
                        "top_k": [{"class_id": int(c), "class_name": names[int(c)],
                                   "prob": round(float(p), 6), "box": bb}
                                  for c, p, bb in zip(ids[b], probs[b], bx, strict=True)],
                    }))  # fmt: skip
                maps_acc.append(small.numpy().astype(np.float16))
                if len(lines) >= 1000:
                    _flush(dest, shard, lines, maps_acc)
                    lines, maps_acc, shard = [], [], shard + 1
        if lines:
            _flush(dest, shard, lines, maps_acc)

    one_pass(files[:64], tempfile.mkdtemp())
    t0 = time.perf_counter()
    one_pass(files, out)
    return {"images": len(files), "seconds": time.perf_counter() - t0, "devices": 1}


def _flush(dest, shard, lines, maps):
    with open(os.path.join(dest, f"part-{shard:05d}.jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")
    np.savez(os.path.join(dest, f"part-{shard:05d}.npz"), maps=np.concatenate(maps))


def _child(kind: str, images: str, batch: int, devices: int, draft: bool, dw: str = "") -> dict:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    out = tempfile.mkdtemp(prefix=f"bench-{kind}-")
    cmd = [sys.executable, __file__, "--child", kind, "--images", images, "--out", out,
           "--batch-size", str(batch), "--depthwise", dw or "native"] + (
               ["--draft"] if draft else [])  # fmt: skip
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if res.returncode:
        raise SystemExit(f"{kind} failed:\n{res.stdout[-2000:]}{res.stderr[-4000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--num-images", type=int, default=2000)
    p.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "camjax-bench-jpegs"))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--camjax",
        default="native:1,shifted:1,shifted:4,shifted:8",
        help="camjax runs as depthwise:devices (depthwise: native = nn.Conv, shifted = "
        "camjax.cpu.shifted_depthwise; devices: simulated CPU devices)",
    )
    p.add_argument("--depthwise", default="native", help=argparse.SUPPRESS)
    p.add_argument("--draft", action="store_true", help="PyTorch side decodes JPEGs in draft")
    p.add_argument("--child", choices=("camjax", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--images", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        run = run_camjax if a.child == "camjax" else None
        r = run(a.images, a.out, a.batch_size, a.depthwise) if run else run_torch(
            a.images, a.out, a.batch_size, a.draft)  # fmt: skip
        print(json.dumps(r))
        return
    images = os.path.join(a.data_dir, str(a.num_images))
    t0 = time.perf_counter()
    make_jpegs(images, a.num_images)
    print(f"{a.num_images} JPEGs in {images} ({time.perf_counter() - t0:.0f} s to make)")
    rows = [("PyTorch" + (" (draft decode)" if a.draft else ""),
             _child("torch", images, a.batch_size, 1, a.draft))]  # fmt: skip
    for item in a.camjax.split(","):
        dw, d = item.split(":")
        r = _child("camjax", images, a.batch_size, int(d), False, dw)
        rows.append((f"camjax, {dw} depthwise, {d} device(s)", r))
    torch_ips = rows[0][1]["images"] / rows[0][1]["seconds"]
    print("| pipeline | images | seconds | images/s | vs PyTorch |")
    print("|---|---:|---:|---:|---:|")
    for name, r in rows:
        ips = r["images"] / r["seconds"]
        print(
            f"| {name} | {r['images']} | {r['seconds']:.1f} | {ips:.1f} | {ips / torch_ips:.2f}x |"
        )


if __name__ == "__main__":
    main()
