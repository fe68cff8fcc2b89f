"""The custom ops at typical deployment shapes (Mask R-CNN, DCNv2, InternImage, panoptic), as seeded random inputs:
what benchmarks/ops_bench.py times on the CPU and, through ``edgeseg.ops.cuda_check.cuda_variants``, on the GPU.
Needs only torch."""
from __future__ import annotations

import torch


def workloads(device: str, dtype=torch.float32, seed: int = 0) -> dict:
    """Inputs for each op at a typical deployment shape: op -> its arguments, the tensors on ``device`` (the
    floating-point ones in ``dtype``), drawn from ``seed`` in a fixed order, so a seed gives the same inputs."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(device=device, dtype=dtype)

    image = (800, 1088)
    xy = torch.rand(512, 2, generator=g) * torch.tensor([1000.0, 700.0])
    wh = torch.rand(512, 2, generator=g) * 300 + 8
    boxes = torch.cat([torch.zeros(512, 1), xy, xy + wh], 1).to(device=device, dtype=dtype)
    levels = [rand(1, 256, image[0] // s, image[1] // s) for s in (4, 8, 16, 32)]
    dcn_x = rand(1, 256, 64, 64)  # ResNet-50 stage 3 at a 1024-pixel input
    ho = wo = 64
    panoptic_h, panoptic_w = 400, 544
    semantic = torch.randint(0, 53, (panoptic_h, panoptic_w), generator=g).to(device)
    return {
        "roi_align": dict(x=levels[0], rois=boxes, out=7, scale=0.25),
        "multilevel_roi_align": dict(feats=levels, rois=boxes, out=7),
        "deform_conv2d": dict(x=dcn_x, w=rand(256, 256, 3, 3, scale=0.02), offset=rand(1, 18, ho, wo, scale=2.0),
                              mask=torch.rand(1, 9, ho, wo, generator=g).to(device=device, dtype=dtype), b=rand(256)),
        "dcnv3": dict(x=rand(1, 56, 56, 128), offset=rand(1, 56, 56, 8 * 9 * 2, scale=2.0),
                      mask=torch.softmax(torch.randn(1, 56, 56, 8, 9, generator=g), -1).reshape(1, 56, 56, 72).to(device=device, dtype=dtype)),
        "paste_masks": dict(masks=torch.rand(100, 28, 28, generator=g).to(device=device, dtype=dtype), boxes=boxes[:100, 1:], image=image),
        "panoptic_paste": dict(semantic=semantic, masks=(torch.rand(50, panoptic_h, panoptic_w, generator=g) > 0.97).float().to(device),
                               scores=torch.rand(50, generator=g).to(device), classes=torch.randint(0, 80, (50,), generator=g).to(device)),
    }


# What each workload is, in words (the bench's report prints it above the op's table).
SHAPES = {
    "roi_align": "P2 1×256×200×272 (800×1088 image), 512 boxes, 7×7, sampling 2, aligned.",
    "multilevel_roi_align": "P2–P5 of an 800×1088 image, 256 channels, 512 boxes, 7×7, sampling 2 (FPN level by box size).",
    "deform_conv2d": "ResNet-50 stage 3: 1×256×64×64 → 256, 3×3, pad 1, one offset group, modulated (DCNv2).",
    "dcnv3": "InternImage-T stage 2: 1×56×56×128 channels-last, 8 groups, 3×3 (the core; projections are plain linears).",
    "paste_masks": "100 RoI masks 28×28 into 800×1088 (the same arithmetic as torchvision's paste_masks_in_image, matched within 1e-6).",
    "panoptic_paste": "50 instances over 400×544, 133 classes of which 80 things.",
}
