"""Instance and panoptic models: detectors whose whole post-processing is in the graph."""
from edgeseg.models.detection.maskrcnn import (INSTANCE_OUTPUTS, MaskRCNN, build_maskrcnn, load_torchvision_checkpoint,
                                               wrap_torchvision)
from edgeseg.models.detection.lpsnet import LPSNet, build_lpsnet
from edgeseg.models.detection.panoptic_fpn import PanopticFPN
from edgeseg.models.detection.postprocess import PANOPTIC_OUTPUTS, panoptic_merge

__all__ = ["INSTANCE_OUTPUTS", "PANOPTIC_OUTPUTS", "LPSNet", "MaskRCNN", "PanopticFPN", "build_lpsnet", "build_maskrcnn", "load_torchvision_checkpoint",
           "panoptic_merge", "wrap_torchvision"]
