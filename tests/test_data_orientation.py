"""Issue #24 item 6: one orientation rule (EXIF applied) for training, evaluation and
extraction. Each JPEG is written with its pixels stored turned and an EXIF orientation
tag that turns them back (as a phone camera writes them); the box is drawn on the
upright photo, as a viewer shows it."""

import os

import numpy as np
import pytest
from PIL import Image, ImageOps

from camjax import data
from camjax.data import preprocess
from configs.default import get_config

H, W = 40, 64  # the upright photo: wider than high
BOX = (6, 4, 37, 21)  # inclusive x0, y0, x1, y1 on the upright photo
# The transpose that *stores* an upright photo under each EXIF orientation (the inverse
# of what exif_transpose applies).
STORE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def _upright_photo() -> np.ndarray:
    img = np.full((H, W, 3), 30, np.uint8)
    x0, y0, x1, y1 = BOX
    img[y0 : y1 + 1, x0 : x1 + 1] = 230
    img[:6, W - 6 :] = (230, 30, 30)  # a red corner: tells mirror images apart
    return img


def write_turned_jpegs(root) -> list[str]:
    """``root/photo/o<k>.jpg`` for EXIF orientations 1..8 and ``root/other/...`` (a second
    class); returns the CSV lines of the boxes (upright frame)."""
    photo = Image.fromarray(_upright_photo())
    lines = []
    for cls in ("photo", "other"):
        os.makedirs(os.path.join(root, cls))
        for o in range(1, 9):
            stored = photo if o == 1 else photo.transpose(STORE[o])
            exif = Image.Exif()
            exif[0x0112] = o
            path = os.path.join(root, cls, f"o{o}.jpg")
            stored.save(path, quality=95, exif=exif)
            x0, y0, x1, y1 = BOX
            lines.append(f"{cls}/o{o}.jpg,{cls},{x0},{y0},{x1},{y1}")
    return lines


def test_the_written_files_are_upright_for_pil(tmp_path):
    write_turned_jpegs(tmp_path)
    for o in range(1, 9):
        with Image.open(tmp_path / "photo" / f"o{o}.jpg") as im:
            assert im.getexif()[0x0112] == o
            up = np.asarray(ImageOps.exif_transpose(im), np.int16)
        assert up.shape == (H, W, 3)
        assert np.abs(up - _upright_photo()).mean() < 3, o


@pytest.mark.parametrize("o", range(1, 9))
def test_upright_is_exif_transpose(o):
    stored = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    img = Image.fromarray(stored)
    img.getexif()[0x0112] = o
    want = np.asarray(ImageOps.exif_transpose(img))
    got = preprocess.upright(stored, np.int32(o)).numpy()
    np.testing.assert_array_equal(got, want)


def _cfg(root, boxes, augment="none"):
    c = get_config().data
    c.name = "folder"
    c.image_size = 32
    c.normalization = "unit"
    c.folder.root = str(root)
    c.folder.boxes = boxes
    c.folder.val_fraction = 0.0
    c.train_augment = augment
    c.max_boxes = 1
    return c


def _boxes_frame_the_rectangle(batch):
    """The bright (white, not red) rectangle lies where the box says, +-1 pixel."""
    for j in np.flatnonzero(batch.get("valid", np.ones(len(batch["label"]), bool))):
        img = batch["image"][j]
        white = img.min(-1) > 0.5
        if not batch["bbox_valid"][j, 0]:
            assert white.sum() <= 2, "a box was dropped but its rectangle is in the crop"
            continue
        ys, xs = np.nonzero(white)
        got = np.array([xs.min(), ys.min(), xs.max(), ys.max()])
        assert np.abs(got - batch["bboxes"][j, 0]).max() <= 1, (got, batch["bboxes"][j, 0])


def test_training_evaluation_and_extraction_see_the_same_upright_photo(tmp_path):
    lines = write_turned_jpegs(tmp_path / "img")
    csv = tmp_path / "boxes.csv"
    csv.write_text("image,class,x0,y0,x1,y1\n" + "\n".join(lines) + "\n")
    c = _cfg(tmp_path / "img", str(csv))
    # Evaluation: every box is inside its upright image and frames the rectangle.
    batches = list(data.eval_iterator(c, "train", global_batch_size=16))
    ev = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    assert ev["valid"].sum() == 16
    _boxes_frame_the_rectangle(ev)
    # Extraction reads the same files (Pillow, EXIF applied): the same pixels as the
    # evaluation pipeline, up to the two resizers' rounding and JPEG noise.
    paths = sorted(str(p) for p in (tmp_path / "img").rglob("*.jpg"))
    ext = next(
        iter(data.folder_iterator(paths, image_size=32, normalization="unit", batch_size=16))
    )
    assert ext["valid"].all() and (ext["orig_size"] == (H, W)).all()
    upright = ext["image"].mean(0)  # all 16 files hold the same upright photo
    for j in range(16):
        assert np.abs(ev["image"][j] - upright).mean() < 0.02, j
        assert np.abs(ext["image"][j] - upright).mean() < 0.02, j
    # Training (no augmentation, and the random resized crop with its mirror).
    for augment in ("none", "random_resized_crop", "crop_flip"):
        c = _cfg(tmp_path / "img", str(csv), augment)
        it = data.train_iterator(c, global_batch_size=16, seed=1, process_index=0, process_count=1)
        for _ in range(2):
            _boxes_frame_the_rectangle(next(it))


def test_a_box_outside_the_stored_frame_but_inside_the_upright_one_is_accepted(tmp_path):
    # Orientation 6 stores the 64-wide photo 40 wide: x1 = 50 lies outside the stored
    # pixels and inside the upright photo; the index checked the stored size before.
    write_turned_jpegs(tmp_path / "img")
    csv = tmp_path / "b.csv"
    csv.write_text("image,class,x0,y0,x1,y1\nphoto/o6.jpg,photo,40,2,50,10\n")
    assert data.info(_cfg(tmp_path / "img", str(csv))).num_examples == {"train": 16}
    csv.write_text("image,class,x0,y0,x1,y1\nphoto/o6.jpg,photo,2,40,10,50\n")
    with pytest.raises(ValueError, match=r"outside the 64x40 \(upright, EXIF applied\) image"):
        data.info(_cfg(tmp_path / "img", str(csv)))
