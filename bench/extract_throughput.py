"""End-to-end extraction throughput: camjax vs an equivalent PyTorch pipeline.

    python bench/extract_throughput.py                   # 2,000 JPEGs, camjax 1, 4 and 8 devices
    python bench/extract_throughput.py --num-images 300  # a quick look

Both pipelines read the same generated JPEGs of mixed sizes (640x480 to 2048x1536),
decode and resize them to 224 (PIL, bilinear, antialiased), run EfficientNet-Lite0 with
the same ImageNet weights, take the top-5 CAMs, box each at 20% of its max (largest
8-connected component), and write JSON Lines records plus float16 feature-resolution maps
every 1,000 images. camjax: ``camjax.extract.extract_to`` (threads decode, one jitted
program over the local devices, boxes in the same program), with XLA's grouped convolution
("native") or camjax's opt-in CPU depthwise ("shifted", :mod:`camjax.cpu`). PyTorch: a
DataLoader (PIL decode, same resize), the torch EfficientNet-Lite0 of
tests/test_efficientnet.py with the released weights, torchcam-style CAM (classifier
weights times the last feature map, ``F.interpolate`` bilinear to 224, min-max), OpenCV
``connectedComponentsWithStats`` boxes.

Fair by construction (bench/fair.py): the same decode on both sides (Pillow's JPEG draft
mode to at least twice 224, as camjax always decodes; ``--full-decode`` turns it off on
the PyTorch side and says so in the table), the same number of decode workers
(``--decode-workers``: camjax's threads, PyTorch's DataLoader processes) and all cores for
the network on both sides. Each pipeline is a worker process (the device count is fixed
at JAX start-up) that loads and warms up (64 images) first; then the rounds interleave:
one timed pass of every worker per round, in alternating order, the others idle. Wall
time and CPU time (the worker's threads and its finished children) per pass; a load check
before and after marks a run on a busy machine as contaminated.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import fair  # noqa: E402

SIZES = [(640, 480), (1024, 768), (800, 800), (500, 375), (1600, 1200), (2048, 1536), (480, 640)]


def make_jpegs(folder: str, n: int, sizes=SIZES) -> str:
    """``n`` JPEGs of mixed sizes (kept between runs in ``folder``)."""
    from PIL import Image, ImageDraw

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        path = os.path.join(folder, f"img{i:06d}.jpg")
        if os.path.exists(path):
            continue
        w, h = sizes[i % len(sizes)]
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


def _list_file(paths: list[str]) -> str:
    folder = tempfile.mkdtemp(prefix="bench-list-")
    path = os.path.join(folder, "list.txt")
    with open(path, "w") as f:
        f.write("".join(p + "\n" for p in paths))
    return path


def camjax_pass(loaded, batch: int, decode_workers: int):
    """``run(paths, out) -> images``: one extraction of ``paths`` into a new ``out``."""
    from camjax.extract.run import RunOptions, extract_to

    def run(paths: list[str], out: str) -> int:
        options = RunOptions(lists=(_list_file(paths),), batch_size=batch, progress=False,
                             shard_size=1000, threads=decode_workers)  # fmt: skip
        return int(extract_to(loaded, [], out, options=options)["num_images"])

    return run


def load_camjax(depthwise: str = "native", name: str = "efficientnet_lite0_gap"):
    import dataclasses

    from camjax import cpu
    from camjax.checkpoints import load_named

    loaded = load_named(name)
    if depthwise == "shifted":
        loaded = dataclasses.replace(loaded, model=cpu.shifted_depthwise(loaded.model))
    return loaded


def torch_pass(batch: int, draft: bool, decode_workers: int, device: str = "cpu"):
    """``run(paths, out) -> images`` for the PyTorch pipeline (module docstring)."""
    import cv2
    import torch
    import torch.nn.functional as F
    from PIL import Image

    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from test_efficientnet import _TorchLite0

    from camjax.pretrained import WEIGHTS, load_state_dict

    torch.set_num_threads(fair.usable_cores())
    net = _TorchLite0().eval()
    state = load_state_dict(WEIGHTS["efficientnet_lite0_gap"].path())
    net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    net = net.to(device)
    names = WEIGHTS["efficientnet_lite0_gap"].class_names()

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

    def run(paths: list[str], dest: str) -> int:
        os.makedirs(dest, exist_ok=True)
        loader = torch.utils.data.DataLoader(
            Files(paths), batch_size=batch, num_workers=decode_workers
        )
        lines, maps_acc, shard = [], [], 0
        w_fc = net._fc.weight
        with torch.no_grad():
            for x, hw, idx in loader:
                logits, f = net(x.to(device))
                probs, ids = logits.softmax(-1).topk(5, dim=-1)
                cams = torch.einsum("bkc,bchw->bkhw", w_fc[ids], f)
                lo = cams.amin((2, 3), keepdim=True)
                hi = cams.amax((2, 3), keepdim=True)
                small = (cams - lo) / (hi - lo).clamp_min(1e-12)
                big = F.interpolate(cams, size=(224, 224), mode="bilinear", align_corners=False)
                lo, hi = big.amin((2, 3), keepdim=True), big.amax((2, 3), keepdim=True)
                big = ((big - lo) / (hi - lo).clamp_min(1e-12)).cpu().numpy()
                probs, ids = probs.cpu(), ids.cpu()
                for b in range(len(idx)):
                    bx = boxes_of(big[b])
                    lines.append(json.dumps({
                        "index": int(idx[b]), "path": paths[int(idx[b])],
                        "height": int(hw[b, 0]), "width": int(hw[b, 1]),
                        "top_k": [{"class_id": int(c), "class_name": names[int(c)],
                                   "prob": round(float(p), 6), "box": bb}
                                  for c, p, bb in zip(ids[b], probs[b], bx, strict=True)],
                    }))  # fmt: skip
                maps_acc.append(small.cpu().numpy().astype(np.float16))
                if len(lines) >= 1000:
                    _flush(dest, shard, lines, maps_acc)
                    lines, maps_acc, shard = [], [], shard + 1
        if lines:
            _flush(dest, shard, lines, maps_acc)
        return len(paths)

    return run


def _flush(dest, shard, lines, maps):
    with open(os.path.join(dest, f"part-{shard:05d}.jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")
    np.savez(os.path.join(dest, f"part-{shard:05d}.npz"), maps=np.concatenate(maps))


def _worker(a: argparse.Namespace) -> None:
    """Load and warm up (64 images), then serve timed passes over every image."""
    files = [os.path.join(a.images, f) for f in sorted(os.listdir(a.images))]
    if a.child == "torch":
        run = torch_pass(a.batch_size, not a.full_decode, a.decode_workers)
    else:
        run = camjax_pass(load_camjax(a.depthwise), a.batch_size, a.decode_workers)
    run(files[:64], tempfile.mkdtemp(prefix="bench-warm-"))
    fair.serve(lambda: {"images": run(files, tempfile.mkdtemp(prefix=f"bench-{a.child}-"))})


def _start(kind: str, name: str, images: str, a: argparse.Namespace, devices: int, dw: str):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    cmd = [sys.executable, __file__, "--child", kind, "--images", images,
           "--batch-size", str(a.batch_size), "--depthwise", dw,
           "--decode-workers", str(a.decode_workers)] + (
               ["--full-decode"] if a.full_decode else [])  # fmt: skip
    return fair.Worker(name, cmd, env)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--num-images", type=int, default=2000)
    p.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "camjax-bench-jpegs"))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=2, help="timed passes of every pipeline")
    p.add_argument(
        "--camjax",
        default="native:1,shifted:1,shifted:4,shifted:8",
        help="camjax runs as depthwise:devices (depthwise: native = nn.Conv, shifted = "
        "camjax.cpu.shifted_depthwise; devices: simulated CPU devices)",
    )
    p.add_argument("--decode-workers", type=int, default=2,
                   help="camjax decode threads = PyTorch DataLoader workers")  # fmt: skip
    p.add_argument("--full-decode", action="store_true",
                   help="PyTorch decodes JPEGs at full size (camjax: draft)")  # fmt: skip
    p.add_argument("--depthwise", default="native", help=argparse.SUPPRESS)
    p.add_argument("--child", choices=("camjax", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--images", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        _worker(a)
        return
    images = os.path.join(a.data_dir, str(a.num_images))
    make_jpegs(images, a.num_images)
    decode = "full-size decode" if a.full_decode else "draft decode"
    specs = [("torch", f"PyTorch ({decode})", 1, "native")]
    for item in a.camjax.split(","):
        dw, d = item.split(":")
        specs.append(("camjax", f"camjax, {dw} depthwise, {d} device(s)", int(d), dw))
    workers = {}
    try:
        for kind, name, devices, dw in specs:
            workers[name] = _start(kind, name, images, a, devices, dw)
        check = fair.LoadCheck().start()
        fair.interleave(workers, a.rounds, warmup=0, pause=0.3)
        verdict = check.finish()
    finally:
        for w in workers.values():
            w.close()
    times = {name: w.times() for name, w in workers.items()}
    n = workers[specs[0][1]].results[0]["images"]
    print(f"\n{a.num_images} JPEGs, batch {a.batch_size}, {a.decode_workers} decode workers a "
          f"side, {a.rounds} interleaved rounds (median), {fair.usable_cores()} cores")  # fmt: skip
    print("| pipeline | images/s (wall) | CPU s per 1,000 images | vs PyTorch (wall) |")
    print("|---|---:|---:|---:|")
    for name, t in times.items():
        print(f"| {name} | {n / t.median_wall:.1f} | {1e3 * t.median_cpu / n:.1f} | "
              f"{fair.ratio(times, name, specs[0][1]):.2f}x |")  # fmt: skip
    print(fair.verdict_line(verdict))


if __name__ == "__main__":
    main()
