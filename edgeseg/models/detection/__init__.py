"""Instance (and, next, panoptic) models: detectors whose whole post-processing is in the graph."""
from edgeseg.models.detection.maskrcnn import (INSTANCE_OUTPUTS, MaskRCNN, build_maskrcnn, load_torchvision_checkpoint,
                                               wrap_torchvision)

__all__ = ["INSTANCE_OUTPUTS", "MaskRCNN", "build_maskrcnn", "load_torchvision_checkpoint", "wrap_torchvision"]
