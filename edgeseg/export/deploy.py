"""Deploy graphs: frames in, decisions out, so that a camera frame crosses the runtime boundary once as 8-bit
pixels and comes back as compact decisions, with no host pre- or post-processing.

Input: uint8 N×H×W×C frames of any size, channels in ``frame_order`` (RGB, or BGR as OpenCV decodes). Inside
the graph, in the float pipeline's order (``edgeseg.runtime.prepost``): the optional resize to a fixed network
size (bilinear, half-pixel, stretch), the channel order, ``pixel_scale`` and mean/std folded into one multiply-add,
and the padding to ``size_divisor`` (mirrored, as ``preprocess`` pads). Mask R-CNN declares ``size_divisor`` 1 and pads
itself with zeros, as torchvision does, so here as in the float contract it sees the frame's own size.

Outputs, at the frame's size:
- semantic: ``labels`` N×H×W (uint8 for ≤ 255 classes, else int32): the argmax, or the sigmoid threshold.
- instance: ``boxes`` N×D×4 (frame pixels, clipped to the frame as torchvision clips them), ``scores`` N×D,
  ``labels`` N×D int32, ``num_detections`` N
  int32, ``instance_map`` N×H×W (uint8 for D ≤ 255, else int32; pixel = 1 + the highest-scoring detection whose
  mask ≥ 0.5 covers it, 0 where none does: the rule of ``edgeseg.runtime.prepost.instance_map``) and ``mask_probs``
  N×D×28×28, the mask head's probabilities, which ``edgeseg.runtime.prepost.paste_mask_probs`` pastes on demand
  into overlapping full-size masks (mask AP needs those; drawing and tracking need only the map). Both together
  are ~0.6 MB at 512² with D = 100, against 105 MB of float masks.
- panoptic: ``panoptic`` N×H×W ids (uint8 for ≤ 255 segment rows, else int32), ``segments`` N×S×5 (the table),
  ``semantic`` N×H×W labels (the semantic head's argmax, for mIoU), instead of N×K×H×W float logits. Inside, the
  merge reads each instance's box (and, for Panoptic FPN, its 28×28 mask-head mask) only inside the box
  (EdgeSegPanopticMerge): no N×D×H×W masks are made in either I/O form.

Only ops TensorRT 10's ONNX parser takes: Cast, Transpose, Mul/Add, Resize, Gather, Slice, ArgMax, ReduceMax,
Where, comparisons.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgeseg.export.metadata import ModelMeta


def _label_dtype(count: int) -> torch.dtype:
    """As ``edgeseg.runtime.prepost.label_dtype``: ids 0..count in uint8 where they fit (TensorRT has no uint16)."""
    return torch.uint8 if count <= 255 else torch.int32


def _ids(t: Tensor, dtype: torch.dtype) -> Tensor:
    """Integer ids as ``dtype``; to uint8 through float, the only conversion TensorRT has into uint8."""
    return t.float().to(dtype) if dtype == torch.uint8 else t.to(dtype)


def uint8_input_through_cast(proto):
    """Shape nodes reading the uint8 frames read the Cast's output instead (same shape): TensorRT lets only a
    Cast (to FP32/FP16) consume a uint8 network input. The dynamo exporter reads the frame's size off the input."""
    name = proto.graph.input[0].name
    nodes = list(proto.graph.node)
    cast = next((n for n in nodes if n.op_type == "Cast" and list(n.input) == [name]), None)
    shapes = [n for n in nodes if n.op_type == "Shape" and list(n.input) == [name]]
    if cast is None or not shapes:
        return proto
    for node in shapes:
        node.input[0] = cast.output[0]
    rest = [n for n in nodes if n not in shapes]
    at = rest.index(cast) + 1  # after the Cast, still before every reader of the Shapes (they came later)
    del proto.graph.node[:]
    proto.graph.node.extend(rest[:at] + shapes + rest[at:])
    return proto


def _mirror_pad(x: Tensor, divisor: int) -> Tensor:
    """Pad H and W (bottom, right) to multiples of ``divisor`` by mirroring, as ``preprocess`` does (reflect, which
    needs the padding shorter than the side; a frame thinner than that is clamped at its first row or column)."""
    for axis in (2, 3):
        n = x.shape[axis]
        i = torch.arange(n + (-n) % divisor, device=x.device)
        j = torch.where(i < n, i, 2 * (n - 1) - i)
        x = x.index_select(axis, torch.maximum(j, torch.zeros_like(j)))  # Max, not Clip: TensorRT's Clip is float-only
    return x


class FramesGraph(nn.Module):
    """``model`` (the float contract) wrapped into a deploy graph; ``meta`` is the float contract's metadata."""

    def __init__(self, model: nn.Module, meta: ModelMeta, frame_order: str = "RGB"):
        super().__init__()
        self.model, self.task = model, meta.task
        c = meta.in_channels
        std = torch.tensor(meta.std, dtype=torch.float32)
        self.register_buffer("scale", (meta.pixel_scale / std).view(1, c, 1, 1), persistent=False)
        self.register_buffer("shift", (-torch.tensor(meta.mean, dtype=torch.float32) / std).view(1, c, 1, 1), persistent=False)
        self.flip = c == 3 and frame_order != meta.channel_order
        self.divisor, self.input_size = meta.size_divisor, meta.input_size
        self.logits_output, self.output_kind, self.threshold = meta.logits_output, meta.output_kind, meta.threshold
        self.output_stride = meta.output_stride
        self.labels = _label_dtype(meta.num_classes)
        self.ids = _label_dtype(max(meta.max_detections, 1))

    def forward(self, frames: Tensor) -> dict[str, Tensor]:
        x = frames.float().permute(0, 3, 1, 2)  # TensorRT takes uint8 only into a Cast (network I/O only)
        if self.flip:
            x = x.flip(1)
        h, w = x.shape[-2:]
        if self.input_size is not None:
            x = F.interpolate(x, size=tuple(self.input_size), mode="bilinear", align_corners=False)
        x = x * self.scale + self.shift
        if self.input_size is None:
            x = _mirror_pad(x, self.divisor)
        if self.task == "semantic":
            return {"labels": self._labels(self.model(x), x, h, w)}
        if self.task == "instance":
            return self._instances(x, h, w)
        out = self.model(x)
        table = out["segments"]
        return {"panoptic": _ids(out["panoptic"][:, :h, :w], _label_dtype(table.shape[1])), "segments": table,
                "semantic": _ids(out["semantic_logits"][:, :, :h, :w].argmax(1), self.labels)}

    def _labels(self, out, x: Tensor, h, w) -> Tensor:
        scores = out[self.logits_output] if isinstance(out, dict) else out
        if self.output_stride != 1:
            scores = F.interpolate(scores, size=x.shape[-2:], mode="bilinear", align_corners=False)
        if self.input_size is None:
            scores = scores[:, :, :h, :w]
        else:
            scores = F.interpolate(scores, size=(h, w), mode="bilinear", align_corners=False)
        if self.output_kind == "softmax":
            return _ids(scores.argmax(1), self.labels)
        if self.output_kind == "sigmoid_binary":
            return _ids(scores[:, 0] > self.threshold, self.labels)
        above = scores > self.threshold
        best = torch.where(above, scores, torch.full_like(scores, -1.0)).argmax(1) + 1  # probabilities are ≥ 0
        return _ids(torch.where(above.any(1), best, torch.zeros_like(best)), self.labels)

    def _instances(self, x: Tensor, h, w) -> dict[str, Tensor]:
        out = self.model.detect(x, mask_probs=True)
        covered = out["masks"][:, :, :h, :w] >= 0.5                         # N×D×H×W, detections in score order
        first = covered.to(torch.int32).argmax(1) + 1  # the first (highest-scoring) covering one; int32: TensorRT's ArgMax
        ids = _ids(torch.where(covered.any(1), first, torch.zeros_like(first)), self.ids)
        return {"boxes": out["boxes"], "scores": out["scores"],
                "labels": out["labels"].to(torch.int32), "num_detections": out["num_detections"].to(torch.int32),
                "instance_map": ids, "mask_probs": out["mask_probs"]}


OUTPUTS = {
    "semantic": {"labels": "N×H×W class ids at the frame's size"},
    "instance": {"boxes": "N×D×4 boxes (x1, y1, x2, y2) in frame pixels", "scores": "N×D", "labels": "N×D int32 (0: empty slot)",
                 "num_detections": "N int32", "instance_map": "N×H×W ids: 1 + the highest-scoring detection covering the pixel",
                 "mask_probs": "N×D×28×28 mask-head probabilities, pasted on demand into the boxes"},
    "panoptic": {"panoptic": "N×H×W segment ids (0: void)", "segments": "N×S×5 (id, category, is_thing, area, score)",
                 "semantic": "N×H×W semantic-head class ids"},
}


def float_twin(meta: ModelMeta) -> ModelMeta:
    """The float contract's metadata of a deploy graph's model: the pipeline a deploy graph is held against."""
    from dataclasses import replace

    outputs = {meta.logits_output: "class scores"} if meta.task == "semantic" else {}
    return replace(meta, io="tensors", frame_order="RGB", **({"outputs": outputs} if outputs else {}))


def frames_sample(meta: ModelMeta, side: int) -> Tensor:
    """A uint8 frame to trace with: deliberately not a multiple of the divisor, so the padding is traced."""
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (1, side - 3, side + 5, meta.in_channels), dtype=torch.uint8, generator=g)


__all__ = ["FramesGraph", "OUTPUTS", "float_twin", "frames_sample", "uint8_input_through_cast"]
