"""The input side of extraction: listing, decoding within a memory budget, bounded
read-ahead, and the output folder's bookkeeping (escaping, manifest checks, file modes)."""

import io
import os
import resource
import struct
import subprocess
import sys
import threading
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from camjax.extract.reader import read_skipped
from camjax.extract.store import OutputMismatch, Store, escape_tsv, format_skipped, unescape_tsv
from camjax.files import images as images_lib
from camjax.files.inputs import list_inputs
from camjax.files.prefetch import ordered_map


def _png(path, h=6, w=8, value=0):
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)


def test_listing_folders_globs_lists_and_bad_entries(tmp_path):
    d = tmp_path / "d"
    (d / "sub" / "deeper").mkdir(parents=True)
    for p in ("b.png", "a.jpg", "sub/c.png", "sub/deeper/e.png"):
        _png(d / p)
    (d / "notes.txt").write_text("ignored: not an image name")
    (d / "dir.jpg").mkdir()  # a folder named like an image
    os.symlink(d / "missing.png", d / "dangling.png")
    os.symlink(d / "loop.png", d / "loop.png")  # a link to itself: ELOOP
    os.symlink(d, d / "sub" / "back")  # a folder link back to an ancestor

    flat = list_inputs([str(d)])
    assert [os.path.basename(p) for p in flat.files] == ["a.jpg", "b.png"]
    reasons = {os.path.basename(p): why for p, why in flat.skipped}
    assert reasons == {
        "dangling.png": "dangling symbolic link",
        "dir.jpg": "a directory, not an image file",
        "loop.png": "symbolic link loop",
    }
    deep = list_inputs([str(d)], recursive=True)
    rel = [os.path.relpath(p, d) for p in deep.files]
    assert rel == ["a.jpg", "b.png", "sub/c.png", "sub/deeper/e.png"]
    assert any("already searched" in why for _, why in deep.skipped)  # the loop is named
    # ** globs any depth; a file named twice is listed once, in first-seen order.
    g = list_inputs([str(d / "**" / "*.png"), str(d / "b.png")])
    assert sorted(os.path.relpath(p, d) for p in g.files) == ["b.png", "sub/c.png",
                                                             "sub/deeper/e.png"]  # fmt: skip
    assert len(g.files) == 3
    # A list file: paths relative to its folder, comments and blanks ignored, a missing
    # entry reported rather than fatal.
    lst = tmp_path / "list.txt"
    lst.write_text("# photos\nd/a.jpg\n\nd/sub/c.png\nd/nothere.png\n")
    got = list_inputs([], lists=[str(lst)])
    assert [os.path.relpath(p, tmp_path) for p, _ in got.entries] == [
        "d/a.jpg", "d/sub/c.png", "d/nothere.png"]  # fmt: skip
    assert got.entries[2][1].startswith("cannot read")
    with pytest.raises(FileNotFoundError, match="glob match"):
        list_inputs([str(d / "*.gif")])
    with pytest.raises(FileNotFoundError, match="no such file"):
        list_inputs([str(tmp_path / "absent")])


def test_tsv_escaping_round_trips_hostile_names(tmp_path):
    names = [("a\tb\nc\\d.jpg", "OSError: bad\tthing\r\n"), ("plain.jpg", "why")]
    text = format_skipped(names)
    assert text.count("\n") == 2 and text.count("\t") == 2  # one row per entry, 2 columns
    path = tmp_path / "s.tsv"
    path.write_text(text)
    assert read_skipped(str(path)) == names
    assert unescape_tsv(escape_tsv("\\t")) == "\\t"


def test_normalize_matches_the_training_pipeline():
    tf = pytest.importorskip("tensorflow")
    from camjax.data import preprocess

    x = np.random.default_rng(0).integers(0, 256, (4, 5, 3)).astype(np.uint8)
    for mode in images_lib.NORMALIZATIONS:
        want = preprocess.normalize(tf.constant(x), mode).numpy()
        np.testing.assert_allclose(images_lib.normalize(x, mode), want, rtol=1e-6, atol=1e-6)
        lo, hi = images_lib.input_range(mode)
        assert lo <= images_lib.normalize(x, mode).min() <= images_lib.normalize(x, mode).max()
        assert images_lib.normalize(x, mode).max() <= hi


def test_resize_is_antialiased_like_tf_and_exif_is_applied(tmp_path):
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (90, 120, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    got, hw = images_lib.read_image(str(tmp_path / "a.png"), 24)
    assert hw == (90, 120) and got.shape == (24, 24, 3)
    # Independent reference: TF's antialiased bilinear (triangle filter widened by the
    # scale); Pillow works in 8-bit fixed point, so allow 1 level of rounding.
    want = tf.image.resize(rgb.astype(np.float32), (24, 24), antialias=True).numpy()
    assert np.abs(got.astype(np.float32) - want).max() <= 1.0
    # Aliasing check: a 1-pixel checkerboard averages to grey, not to a moire pattern.
    board = (np.indices((96, 96)).sum(0) % 2 * 255).astype(np.uint8)
    Image.fromarray(np.dstack([board] * 3)).save(tmp_path / "board.png")
    small, _ = images_lib.read_image(str(tmp_path / "board.png"), 10)
    assert np.abs(small.astype(int) - 127.5).max() <= 3
    # EXIF orientation 6 (rotate 90 clockwise to show): size and pixels as PIL shows them.
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    got, hw = images_lib.read_image(str(tmp_path / "rot.jpg"), None)
    from PIL import ImageOps

    with Image.open(tmp_path / "rot.jpg") as im:
        shown = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert hw == (120, 90) and got.shape == shown.shape
    np.testing.assert_array_equal(got, shown)


def _huge_png(path, side):
    """A valid grayscale PNG of side x side zeros, written without holding the pixels."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)  # fmt: skip

    comp = zlib.compressobj(9)
    row = b"\0" * (side + 1)  # filter byte + pixels
    block = row * 500  # 500 rows at a time: ~6 MB, never the whole image
    idat = b"".join(comp.compress(block) for _ in range(side // 500))
    idat += comp.compress(row * (side % 500)) + comp.flush()
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)))
        f.write(chunk(b"IDAT", idat))
        f.write(chunk(b"IEND", b""))


def test_huge_png_refused_without_decoding_and_jpeg_decoded_small(tmp_path):
    # The reported case: a ~140 KB PNG of 12000 x 12000 pixels (144 MP).
    _huge_png(tmp_path / "huge.png", 12000)
    assert os.path.getsize(tmp_path / "huge.png") < 300_000
    code = (
        "import resource, sys\n"
        "from camjax.files.images import read_image, TooLarge\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n    read_image(sys.argv[1], 224)\nexcept TooLarge as e:\n    print('REFUSED', e)\n"
        "print('MB', (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)\n"
    )
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "huge.png")],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "REFUSED 12000x12000 image needs 144.0 MP decoded, above the 64 MP limit" in res.stdout
    assert int(res.stdout.split("MB")[1]) < 20  # the 144 MB of pixels are never allocated
    # A large JPEG is decoded at a DCT scale: 1/8 of 4000 x 3000 still >= 2 * 224? No:
    # 500 x 375 is not >= 448 on both sides, so 1/4 (1000 x 750) is used.
    Image.new("RGB", (4000, 3000), (200, 10, 10)).save(tmp_path / "big.jpg", quality=80)
    calls = []
    orig = Image.Image.resize

    def spy(self, size, *a, **k):
        calls.append(self.size)
        return orig(self, size, *a, **k)

    Image.Image.resize = spy
    try:
        arr, hw = images_lib.read_image(str(tmp_path / "big.jpg"), 224, max_pixels=1_000_000)
    finally:
        Image.Image.resize = orig
    assert hw == (3000, 4000) and calls == [(1000, 750)] and arr.shape == (224, 224, 3)
    np.testing.assert_allclose(arr.reshape(-1, 3).mean(0), [200, 10, 10], atol=3)


def test_pixel_budget_bounds_concurrent_decodes():
    budget = images_lib.PixelBudget(100)
    peak, lock = [0], threading.Lock()

    def work(n):
        budget.acquire(n)
        with lock:
            peak[0] = max(peak[0], budget.used)
        time.sleep(0.01)
        budget.release(n)
        return n

    out = list(ordered_map(work, [60, 60, 30, 30, 150, 10], threads=4, window=6))
    assert [r for _, r, _ in out] == [60, 60, 30, 30, 150, 10]
    assert peak[0] <= 150  # never over the budget, except one image alone above it


def test_read_ahead_is_bounded_when_the_consumer_stalls():
    started = []

    def fn(i):
        started.append(i)
        return np.zeros(1000)

    gen = ordered_map(fn, range(10_000), threads=4, window=8)
    next(gen)
    time.sleep(0.3)  # a stalled model
    assert len(started) <= 8 + 1
    assert [i for i, _, _ in gen][:3] == [1, 2, 3]
    # Errors are results, in order.
    out = list(ordered_map(lambda i: 1 // (i - 2), range(4), threads=2, window=2))
    assert isinstance(out[2][2], ZeroDivisionError) and out[3][1] == 1


def test_store_refuses_other_settings_and_foreign_folders(tmp_path):
    m = {"format": "camjax-extract/1", "settings": {"method": "cam", "threshold": 0.2},
         "inputs": {"count": 3, "sha256": "x"}, "shard_size": 2, "num_shards": 2}  # fmt: skip
    Store(str(tmp_path / "o")).open(m)
    Store(str(tmp_path / "o")).open(m)  # same run: resumes
    other = {**m, "settings": {"method": "gradcam", "threshold": 0.2}}
    with pytest.raises(OutputMismatch, match="method 'cam', this run 'gradcam'"):
        Store(str(tmp_path / "o")).open(other)
    with pytest.raises(OutputMismatch, match="count 3, this run 4"):
        Store(str(tmp_path / "o")).open({**m, "inputs": {"count": 4, "sha256": "y"}})
    # An old-style output folder (cams.npz + overlays from an earlier run) is not mixed in.
    old = tmp_path / "old"
    (old / "overlays").mkdir(parents=True)
    (old / "cams.npz").write_bytes(b"x")
    (old / "overlays" / "000000_a.png").write_bytes(b"x")
    with pytest.raises(OutputMismatch, match="not empty"):
        Store(str(old)).open(m)
    Store(str(old)).open(m, overwrite=True)
    assert sorted(os.listdir(old)) == ["manifest.json"]


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_outputs_respect_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        s = Store(str(tmp_path / "o"))
        s.open({"format": "f", "settings": {}, "inputs": {}})
        s.commit_shard(0, ['{"a": 1}'], {"x": np.zeros(2)}, [("p", "why")])
    finally:
        os.umask(old)
    for name in ("manifest.json", "part-00000.jsonl", "part-00000.npz", "part-00000.skipped.tsv"):
        assert os.stat(tmp_path / "o" / name).st_mode & 0o777 == 0o666 & ~umask, name


def test_decoding_errors_are_reasons(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(buf, "JPEG")
    (tmp_path / "t.jpg").write_bytes(buf.getvalue()[:200])
    (tmp_path / "x.jpg").write_text("not a jpeg")
    for name in ("t.jpg", "x.jpg"):
        with pytest.raises((OSError, ValueError)):
            images_lib.read_image(str(tmp_path / name), 8)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0
