"""Custom ops. Each has a PyTorch reference (the oracle, differentiable where training needs it) and a
native implementation (``impl="native"``: the compiled CPU launcher of the math core in
``plugins/include/edgeseg``, which the CUDA kernels of the TensorRT plugins share).

During ONNX export the ops follow ``edgeseg.ops.flavour``: ``portable`` traces the reference (or
torchvision's op) into standard ONNX; ``tensorrt`` emits one ``edgeseg::EdgeSeg*`` plugin node per call.
"""
from __future__ import annotations

from edgeseg.ops.dcnv3 import DCNv3, dcnv3
from edgeseg.ops.deform_conv import deform_conv2d
from edgeseg.ops.export import export_flavour, flavour
from edgeseg.ops.paste import panoptic_merge, panoptic_paste, paste_masks
from edgeseg.ops.roi_align import fpn_levels, multilevel_roi_align, roi_align

__all__ = ["DCNv3", "dcnv3", "deform_conv2d", "export_flavour", "flavour", "fpn_levels", "multilevel_roi_align",
           "panoptic_merge", "panoptic_paste", "paste_masks", "roi_align"]
