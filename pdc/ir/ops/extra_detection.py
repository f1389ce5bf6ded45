"""Detection post-processing: non_max_suppression (NonMaxSuppression-11).

For each batch item and class, the boxes whose score exceeds score_threshold (every box when it
is absent) are visited by descending score (ties: lower box index first); a box is selected
unless its IoU with an already selected box of that class is strictly greater than
iou_threshold, until max_output_boxes_per_class (default 0: none) are selected. Boxes are
[y1, x1, y2, x2] with the corners in either order (center_point_box=0) or [x_center, y_center,
width, height] (center_point_box=1). Geometry runs in float32 like ONNX Runtime; a box with no
area never suppresses. The output is (num_selected, 3) rows of [batch, class, box]: its length
depends on the data, so compiled code writes it with a bound (ops/bounded.py).
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..registry import Attr, InferContext, register_op
from ..types import UNKNOWN, TensorType
from .bounded import BOUND_ATTR, length_dim, padded, with_length
from .tensor import runtime_error


def _nms_infer(ctx: InferContext):
    boxes, scores = ctx.types[0], ctx.types[1]
    if ctx.attrs.get("center_point_box", 0) not in (0, 1):
        ctx.fail(f"center_point_box must be 0 or 1, got {ctx.attrs['center_point_box']}")
    for i, name in ((0, "boxes"), (1, "scores"), (3, "iou_threshold"), (4, "score_threshold")):
        if ctx.has_input(i) and ctx.types[i].dtype != dtypes.float32:
            ctx.fail(f"{name} must be float32, got {ctx.types[i].dtype}")
    if ctx.has_input(2) and ctx.types[2].dtype != dtypes.int64:
        ctx.fail(f"max_output_boxes_per_class must be int64, got {ctx.types[2].dtype}")
    for i, name in ((2, "max_output_boxes_per_class"), (3, "iou_threshold"), (4, "score_threshold")):
        if ctx.has_input(i) and ctx.types[i].numel not in (None, 0, 1):
            ctx.fail(f"{name} must be a scalar, got {ctx.types[i]}")
    if boxes.shape is not None and (len(boxes.shape) != 3 or (
            isinstance(boxes.shape[2], int) and boxes.shape[2] != 4)):
        ctx.fail(f"boxes must have shape [num_batches, num_boxes, 4], got {boxes}")
    if scores.shape is not None and len(scores.shape) != 3:
        ctx.fail(f"scores must have shape [num_batches, num_classes, num_boxes], got {scores}")
    if boxes.shape is not None and scores.shape is not None:
        pairs = ((boxes.shape[0], scores.shape[0], "num_batches"), (boxes.shape[1], scores.shape[2], "num_boxes"))
        for a, b, what in pairs:
            if isinstance(a, int) and isinstance(b, int) and a != b:
                ctx.fail(f"boxes {boxes} and scores {scores} differ in {what}")
    return with_length(ctx, [TensorType(dtypes.int64, (length_dim(ctx, UNKNOWN), 3))])


def _corners(box: np.ndarray, center: bool):
    """(y_min, x_min, y_max, x_max) of one box as float32 scalars."""
    if center:
        xc, yc, w, h = box
        hw, hh = w / np.float32(2), h / np.float32(2)
        return yc - hh, xc - hw, yc + hh, xc + hw
    y1, x1, y2, x2 = box
    return min(y1, y2), min(x1, x2), max(y1, y2), max(x1, x2)


def _suppresses(a, b, threshold: np.float32) -> bool:
    ay0, ax0, ay1, ax1 = a
    by0, bx0, by1, bx1 = b
    iw = min(ax1, bx1) - max(ax0, bx0)
    ih = min(ay1, by1) - max(ay0, by0)
    if iw <= 0 or ih <= 0:
        return False
    inter = iw * ih
    area_a, area_b = (ax1 - ax0) * (ay1 - ay0), (bx1 - bx0) * (by1 - by0)
    union = area_a + area_b - inter
    if area_a <= 0 or area_b <= 0 or union <= 0:
        return False
    return inter / union > threshold


def _scalar(a, default):
    if a is None or np.asarray(a).size == 0:
        return default
    return np.asarray(a).reshape(-1)[0]


def _nms_ref(inputs, attrs):
    boxes, scores = inputs[0].astype(np.float32), inputs[1].astype(np.float32)
    inputs = list(inputs) + [None] * (5 - len(inputs))
    max_out = max(int(_scalar(inputs[2], 0)), 0)
    iou = np.float32(_scalar(inputs[3], 0.0))
    score_min = _scalar(inputs[4], None)
    center = bool(attrs.get("center_point_box", 0))
    if boxes.ndim != 3 or boxes.shape[2] != 4 or scores.ndim != 3 or scores.shape[0] != boxes.shape[0] \
            or scores.shape[2] != boxes.shape[1]:
        runtime_error(f"non_max_suppression: boxes {list(boxes.shape)} and scores {list(scores.shape)} do not match")
    if not 0 <= iou <= 1:
        runtime_error(f"non_max_suppression: iou_threshold must be in [0, 1], got {iou}")
    selected = []
    with np.errstate(over="ignore", invalid="ignore"):
        for b in range(boxes.shape[0]):
            corners = [_corners(boxes[b, i], center) for i in range(boxes.shape[1])]
            for c in range(scores.shape[1]):
                s = scores[b, c]
                cand = np.arange(s.size) if score_min is None else np.flatnonzero(s > np.float32(score_min))
                order = cand[np.lexsort((cand, -s[cand].astype(np.float64)))]  # score down, index up
                kept: list[int] = []
                for i in order:
                    if len(kept) >= max_out:
                        break
                    if not any(_suppresses(corners[i], corners[k], iou) for k in kept):
                        kept.append(int(i))
                selected += [(b, c, i) for i in kept]
    return padded([np.array(selected, np.int64).reshape(-1, 3)], attrs, [0])


register_op("non_max_suppression", ["boxes", "scores", "max_output_boxes_per_class?", "iou_threshold?",
                                    "score_threshold?"], ["selected_indices", "length?"], onnx="NonMaxSuppression",
            attrs={"center_point_box": Attr("int", 0), **BOUND_ATTR}, infer=_nms_infer, reference=_nms_ref,
            doc="Greedy per-class non-maximum suppression; [batch, class, box] rows of the kept boxes.")
