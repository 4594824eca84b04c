"""How a ``folder`` data set lies on disk: layouts, image files, box references.

The layouts and the rules for matching a box file's image references are described in
:mod:`camjax.data.image_folder`; this module only lists and matches.
"""

from __future__ import annotations

import collections
import os

from camjax.data import box_files

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
# Image files TensorFlow cannot decode: an error, not silently left out of the data set.
UNREADABLE = (".webp", ".tif", ".tiff", ".heic", ".avif")


def keep(dirpath: str, name: str) -> bool:
    """Whether ``name`` is an image file of the data set (an unreadable kind: error)."""
    low = name.lower()
    if low.endswith(UNREADABLE):
        raise ValueError(
            f"{os.path.join(dirpath, name)!r}: training reads {' '.join(EXTENSIONS)} only; "
            "convert it (e.g. to .png)"
        )
    return low.endswith(EXTENSIONS)


def visible(names) -> list[str]:
    return sorted(n for n in names if not n.startswith("."))


def subdirs(path: str) -> list[str]:
    return [n for n in visible(os.listdir(path)) if os.path.isdir(os.path.join(path, n))]


def has_images(path: str) -> bool:
    return any(
        n.lower().endswith(EXTENSIONS + UNREADABLE) and os.path.isfile(os.path.join(path, n))
        for n in os.listdir(path)
    )


def images(class_dir: str) -> list[str]:
    """Image files under ``class_dir`` (recursive), sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        dirnames[:] = visible(dirnames)
        out += [os.path.join(dirpath, n) for n in visible(filenames) if keep(dirpath, n)]
    if not out:
        raise ValueError(f"class folder {class_dir!r} has no images ({' '.join(EXTENSIONS)})")
    return sorted(out)


def root_images(root: str) -> list[str]:
    """Image files directly in ``root`` (the root/<image> layout), sorted."""
    return sorted(os.path.join(root, n) for n in visible(os.listdir(root)) if keep(root, n))


def split_dirs(root: str) -> dict[str, str] | str | None:
    """``{split: folder}`` for the split layout, None for the class layout, ``"images"``
    for images directly in the root (classes from the box file)."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"data.folder.root {root!r} is not a folder")
    children = subdirs(root)
    if has_images(root):
        if children:
            raise ValueError(
                f"{root!r} holds both images and folders ({children[0]}); use root/<class>/"
                "<image>, or root/<image> with the classes in the box file"
            )
        return "images"
    if not children:
        raise ValueError(f"data.folder.root {root!r} has no class folders")
    flat = [c for c in children if has_images(os.path.join(root, c))]
    empty = [c for c in children if c not in flat and not subdirs(os.path.join(root, c))]
    if empty:
        kind = "class" if flat else "split"
        raise ValueError(f"{kind} folder {os.path.join(root, empty[0])!r} has no images")
    if flat and len(flat) < len(children):
        nested = sorted(set(children) - set(flat))
        raise ValueError(
            f"{root!r} mixes class folders with images ({flat[0]}) and folders without "
            f"images ({nested[0]}); use root/<class>/<image> or root/<split>/<class>/<image>"
        )
    return None if flat else {c: os.path.join(root, c) for c in children}


def finder(root: str, paths: list[str], bases: list[str]):
    """``find(annotation) -> index into paths`` by the aliases of the module docstring;
    an unknown or ambiguous reference is an error naming the box file's line."""
    aliases = collections.defaultdict(set)
    for i, (p, base) in enumerate(zip(paths, bases, strict=True)):
        rels = {os.path.relpath(p, b).replace(os.sep, "/") for b in (root, base)}
        for rel in rels | {os.path.basename(p)}:
            aliases[rel].add(i)
            aliases[os.path.splitext(rel)[0]].add(i)

    def find(a: box_files.Annotation) -> int:
        hits = aliases.get(a.image.replace("\\", "/").removeprefix("./"), set())
        if not hits:
            raise ValueError(f"{a.where}: image {a.image!r} is not in {root}")
        if len(hits) > 1:
            names = ", ".join(sorted(os.path.relpath(paths[i], root) for i in hits)[:3])
            raise ValueError(f"{a.where}: image {a.image!r} is ambiguous ({names}); use its path")
        return next(iter(hits))

    return find


def classes_from_boxes(root: str, anns, paths: list[str], skipped=()) -> dict[str, list[str]]:
    """root/<image> layout: ``{class: [image, ...]}`` from the box file's classes, sorted;
    every image of ``paths`` needs boxes, all of one class. Boxes of the ``skipped``
    (undecodable) images are left out with them."""
    if anns is None:
        raise ValueError(
            f"{root!r} holds images but no class folders: give data.folder.boxes with classes, "
            "or use root/<class>/<image>"
        )
    everything = list(paths) + list(skipped)
    find = finder(root, everything, [root] * len(everything))
    cls: dict[int, str] = {}
    for a in anns:
        i = find(a)
        if i >= len(paths):
            continue
        if a.cls is None:
            raise ValueError(f"{a.where}: no class, and {root!r} has no class folders")
        if cls.setdefault(i, a.cls) != a.cls:
            raise ValueError(
                f"{a.where}: image {a.image!r} has boxes of classes {cls[i]!r} and {a.cls!r}; "
                "an image has one class"
            )
    missing = [p for i, p in enumerate(paths) if i not in cls]
    if missing:
        raise ValueError(f"image {missing[0]!r} has no box in the box file, so no class")
    out: dict[str, list[str]] = {}
    for i in sorted(cls, key=lambda i: (cls[i], paths[i])):
        out.setdefault(cls[i], []).append(paths[i])
    return dict(sorted(out.items()))
