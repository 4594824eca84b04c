"""Box files for the ``folder`` data source: Pascal VOC XML, COCO JSON, CSV.

Each reader returns ``Annotation`` rows: the image reference as the file gives it, the
class name (or None), and the box as *continuous* pixel edges ``(left, top, right,
bottom)``: pixel ``i`` covers ``[i, i + 1)``. Conventions per format:

- VOC XML (a folder, searched recursively, one ``.xml`` per image): the image is the XML
  file's path relative to the folder without ``.xml`` (``cat/001.xml`` -> ``cat/001``);
  ``<object><name>`` is the class; ``<bndbox>`` ``xmin ymin xmax ymax`` are inclusive pixel
  corners, 0-based as camjax's ImageNet reader takes them (``one_based=True`` for the
  PASCAL VOC devkit's 1-based numbers): edges ``(xmin, ymin, xmax + 1, ymax + 1)``.
- COCO JSON (object detection format): ``images[].file_name``, ``categories[].name`` and
  ``annotations[].bbox = [x, y, width, height]``, already continuous:
  ``(x, y, x + width, y + height)``.
- CSV with a header: an image column ``image`` or ``filename``; corners ``x0 y0 x1 y1`` or
  ``xmin ymin xmax ymax`` (inclusive, as VOC); an optional ``class`` or ``label`` column.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import xml.etree.ElementTree as ET

FORMATS = ("voc", "coco", "csv")


@dataclasses.dataclass(frozen=True)
class Annotation:
    image: str  # the reference as written in the file
    cls: str | None
    box: tuple[float, float, float, float]  # left, top, right, bottom (continuous)
    where: str  # file (and row/object) for error messages


def detect_format(path: str, box_format: str = "auto") -> str:
    """``box_format`` if given, else ``voc`` for a folder, by extension otherwise."""
    if box_format != "auto":
        if box_format not in FORMATS:
            raise ValueError(
                f"unknown data.folder.box_format {box_format!r}; known: auto, {', '.join(FORMATS)}"
            )
        return box_format
    if os.path.isdir(path):
        return "voc"
    fmt = {".json": "coco", ".csv": "csv"}.get(os.path.splitext(path)[1].lower())
    if fmt:
        return fmt
    raise ValueError(
        f"cannot tell the box format of {path!r} (a folder of VOC .xml files, a COCO .json or "
        "a .csv); set data.folder.box_format"
    )


def read(path: str, box_format: str = "auto", one_based: bool = False) -> list[Annotation]:
    """All boxes of the box file or folder ``path`` (format by ``detect_format``)."""
    path = os.path.expanduser(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"box file {path!r} does not exist")
    fmt = detect_format(path, box_format)
    if fmt == "voc":
        return _read_voc(path, one_based)
    if fmt == "coco":
        return _read_coco(path)
    return _read_csv(path, one_based)


def _inclusive(x0, y0, x1, y1, one_based: bool) -> tuple[float, float, float, float]:
    shift = 1.0 if one_based else 0.0
    x0, y0, x1, y1 = (float(v) - shift for v in (x0, y0, x1, y1))
    return (x0, y0, x1 + 1.0, y1 + 1.0)


def _read_voc(folder: str, one_based: bool) -> list[Annotation]:
    if not os.path.isdir(folder):
        raise ValueError(f"VOC boxes must be a folder of .xml files, got the file {folder!r}")
    out = []
    found = False
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            if not name.lower().endswith(".xml"):
                continue
            found = True
            path = os.path.join(dirpath, name)
            ref = os.path.relpath(path, folder)[: -len(".xml")].replace(os.sep, "/")
            try:
                root = ET.parse(path).getroot()
            except ET.ParseError as e:
                raise ValueError(f"{path}: not valid XML ({e})") from None
            for k, obj in enumerate(root.iter("object")):
                where = f"{path} object {k}"
                bb = obj.find("bndbox")
                vals = [
                    None if bb is None else bb.findtext(t) for t in ("xmin", "ymin", "xmax", "ymax")
                ]
                if None in vals:
                    raise ValueError(f"{where}: no <bndbox> with xmin, ymin, xmax, ymax")
                try:
                    box = _inclusive(*vals, one_based)
                except ValueError:
                    raise ValueError(f"{where}: box {vals} is not numeric") from None
                name_text = obj.findtext("name")
                cls = name_text.strip() if name_text else None
                out.append(Annotation(ref, cls, box, where))
    if not found:
        raise FileNotFoundError(f"no .xml files in the VOC box folder {folder!r}")
    return out


def _read_coco(path: str) -> list[Annotation]:
    try:
        with open(path, encoding="utf-8-sig") as f:  # -sig: a BOM (Windows editors) too
            doc = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not COCO JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not COCO JSON (an object with images, annotations)")
    images = {}
    for k, im in enumerate(_list(doc, "images", path)):
        if not isinstance(im, dict) or not _is_id(im.get("id")):
            raise ValueError(f"{path} images[{k}]: needs an integer or string id, got {im!r:.80}")
        if not isinstance(im.get("file_name"), str):
            raise ValueError(f"{path} images[{k}]: file_name must be a string")
        images[im["id"]] = im["file_name"]
    cats = {}
    for k, c in enumerate(_list(doc, "categories", path, required=False)):
        if not isinstance(c, dict) or not _is_id(c.get("id")) or "name" not in c:
            raise ValueError(f"{path} categories[{k}]: needs an id and a name, got {c!r:.80}")
        cats[c["id"]] = c["name"]
    out = []
    for k, a in enumerate(_list(doc, "annotations", path)):
        where = f"{path} annotation {k}"
        if not isinstance(a, dict):
            raise ValueError(f"{where}: must be an object, got {a!r:.80}")
        image_id = a.get("image_id")
        if not _is_id(image_id) or image_id not in images:
            raise ValueError(f"{where}: image_id {image_id!r:.80} is not in images")
        cls = None
        if "category_id" in a:
            if not _is_id(a["category_id"]) or a["category_id"] not in cats:
                raise ValueError(
                    f"{where}: category_id {a['category_id']!r:.80} is not in categories"
                )
            cls = str(cats[a["category_id"]])
        bbox = a.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(map(_is_number, bbox)):
            raise ValueError(
                f"{where}: bbox must be 4 numbers [x, y, width, height], got {bbox!r:.80}"
            )
        x, y, w, h = (float(v) for v in bbox)
        out.append(Annotation(images[image_id], cls, (x, y, x + w, y + h), where))
    return out


def _list(doc: dict, key: str, path: str, required: bool = True) -> list:
    """``doc[key]``, which must be a list (an absent optional key: empty)."""
    if key not in doc and not required:
        return []
    value = doc.get(key)
    if not isinstance(value, list):
        kind = "missing" if key not in doc else f"a {type(value).__name__}"
        raise ValueError(f"{path}: {key} must be a list, got {kind}")
    return value


def _is_id(value) -> bool:
    # JSON ids are numbers or strings; a list or object cannot be looked up (unhashable).
    return isinstance(value, int | str) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _column(fields: list[str], options: tuple[str, ...], path: str, required: bool = True):
    lower = {f.strip().lower(): f for f in fields}
    for o in options:
        if o in lower:
            return lower[o]
    if required:
        have = ", ".join(fields)
        have = have if len(have) < 80 else have[:77] + "..."
        raise ValueError(f"{path}: no {' or '.join(options)} column (columns: {have})")
    return None


def _read_csv(path: str, one_based: bool) -> list[Annotation]:
    if os.path.isdir(path):
        raise ValueError(f"CSV boxes must be a file, got the folder {path!r}")
    try:
        # utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark.
        with open(path, newline="", encoding="utf-8-sig") as f:
            return _csv_rows(csv.DictReader(f), path, one_based)
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _csv_rows(reader: csv.DictReader, path: str, one_based: bool) -> list[Annotation]:
    fields = list(reader.fieldnames or [])
    image = _column(fields, ("image", "filename"), path)
    corners = [
        _column(fields, (a, b), path)
        for a, b in (("x0", "xmin"), ("y0", "ymin"), ("x1", "xmax"), ("y1", "ymax"))
    ]
    cls_col = _column(fields, ("class", "label"), path, required=False)
    out = []
    for k, row in enumerate(reader, start=2):  # line 1 is the header
        where = f"{path} line {k}"
        vals = [row[c] for c in corners]
        try:
            box = _inclusive(*vals, one_based)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: box {vals} is not numeric") from None
        if not (row[image] or "").strip():
            raise ValueError(f"{where}: no image name in column {image!r}")
        cls = row[cls_col].strip() if cls_col and row[cls_col] else None
        out.append(Annotation(row[image].strip(), cls, box, where))
    return out
