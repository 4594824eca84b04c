"""Named evaluation protocols: which maps, which resize, which box rule, after whom.

A number from a WSOL paper depends on details its text leaves out. camjax names three
protocols, each a faithful copy of one source, so a table can say which it follows:

- ``paper``: Zhou et al. (CVPR 2016), Sec. 3, as written: the class activation map
  upsampled to the input (bilinear), divided by its maximum with negatives clipped
  (``camjax.maps.normalize(..., "max")``), pixels ``>= 20%`` of the max kept, box of the
  largest 8-connected component (by pixel count). Top-1/top-5 localization error and
  GT-known localization (:mod:`camjax.metrics.paper_loc`).
- ``released``: what the authors' released code does (zhoubolei/CAM): the map resized
  bicubically (MATLAB ``imresize``, ``ILSVRC_generate_heatmap.m`` l. 344 and 352),
  divided by its max (l. 353), written as an 8-bit image (l. 356) and boxed by
  ``bboxgenerator/dt_box`` with levels ``20 100 110`` (``ILSVRC_evaluate_bbox.m`` l. 63,
  89): ``bbox1``, ``bbox2`` and the heuristic ``[top-1 bbox1, top-1 bbox2, top-2 bbox1,
  top-2 bbox2, top-3 bbox1]`` (l. 109-137) (:mod:`camjax.protocols.released`,
  :mod:`camjax.protocols.dt_box`). With ``eval.ten_crop`` the ten crops of the 256 x 256
  resize are merged back as ``mergeTenCrop.m`` does (:mod:`camjax.protocols.ten_crop`).
- ``wsol``: Choe et al. (CVPR 2020), clovaai/wsolevaluation exactly: the raw map resized
  with OpenCV's ``INTER_CUBIC`` (``inference.py`` l. 86-87), min-max normalised
  (``normalize_scoremap``, l. 38-50), boxes from ``compute_bboxes_from_scoremaps``
  (``evaluation.py`` l. 117-168: uint8 cut ``> int(t * max)``, every contour of
  ``RETR_TREE`` for MaxBoxAccV2, the largest by ``cv2.contourArea`` for MaxBoxAcc, boxes
  ``(x, y, min(x + w, W - 1), min(y + h, H - 1))``, ``(0, 0, 0, 0)`` when there is no
  contour), IoU in float64 with the "+1" areas (``calculate_multiple_iou``)
  (:mod:`camjax.protocols.wsol`).

Every protocol gets its maps from :func:`camjax.protocols.predict.protocol_outputs`
(one :func:`camjax.extract` call per protocol with the options below).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Protocol:
    """One evaluation protocol: the map a metric reads and where the rule comes from."""

    name: str
    title: str  # shown in the report
    normalization: str  # camjax.extract's normalization
    upsample_method: str  # camjax.extract's upsample_method
    map_resolution: str  # "input": maps at the input size; "feature": resized on the host
    source: str  # file and lines of the original code


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            "paper",
            "Zhou et al. 2016, Sec. 3 as written (max-normalised map, 20% cut, largest component)",
            "max",
            "bilinear",
            "input",
            "Zhou et al., CVPR 2016, Sec. 3 and 4.1",
        ),
        Protocol(
            "released",
            "Zhou et al. 2016 as released (dt_box levels 20/100/110, bbox1, bbox2, heuristic)",
            "max",
            "bicubic",
            "input",
            "zhoubolei/CAM ILSVRC_generate_heatmap.m l. 337-356, ILSVRC_evaluate_bbox.m "
            "l. 63-137, bboxgenerator/dt_box.cpp",
        ),
        Protocol(
            "wsol",
            "Choe et al. 2020 exactly (INTER_CUBIC, min-max, uint8 cut, contours)",
            "minmax",
            "bilinear",  # unused: the raw map is resized on the host with INTER_CUBIC
            "feature",
            "clovaai/wsolevaluation inference.py l. 38-50, 86-88; evaluation.py l. 45-168",
        ),
    )
}


def get(name: str) -> Protocol:
    """The protocol named ``name``; ``ValueError`` listing the known names."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]
