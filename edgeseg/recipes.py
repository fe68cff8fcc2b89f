"""Training recipes measured on the offline nuclei crops (128², 28 for training, 7 held out): the configurations the
training benchmarks (``benchmarks/instance_train.py``, ``panoptic_train.py``), the precision and quantization
benchmarks and the CI training gates share. The quickstart's LiTS U-Net is ``edgeseg.quickstart.QUICKSTART_CONFIG``."""
from __future__ import annotations

from dataclasses import replace

from edgeseg.train import TrainConfig

# Nuclei are ~10–25 px: anchors from 8 px (paper: 32). The paper's 512 sampled RoIs per image (a quarter
# positive) through a 1024-wide box head and a 256-wide mask head made a CPU step cost ~20 s, mostly
# mask-head convolutions, RoIAlign's backward and fc6: 64 RoIs per image (a 128² crop holds ~10 nuclei,
# so the positives are all kept), a 256-wide box head and a 64-wide mask head cost ~2 s.
MASKRCNN_RECIPE = TrainConfig(
    model="maskrcnn_resnet18_fpn", dataset="nuclei",
    model_args={"anchor_size": 8, "train_proposals": 1000, "box_batch_size_per_image": 64,
                "representation_size": 256, "mask_channels": 64},
    iterations=200, batch_size=4, crop=128, optimizer="adamw", lr=1e-3, warmup_iters=20, seed=0,
)
# The quickstart's U-Net recipe (16-channel padded U-Net, AdamW 3e-3, 128 crops) with the U-Net paper's
# weight map (class balance + separation borders between touching nuclei), batch 4 (28 training crops).
UNET_RECIPE = TrainConfig(
    model="unet_padded", dataset="nuclei", model_args={"base_width": 16}, iterations=300, batch_size=4,
    optimizer="adamw", lr=3e-3, crop=128, weight_map=True, seed=0,
)

PANOPTIC_RECIPES = {
    "panoptic_fpn_resnet18": replace(MASKRCNN_RECIPE, model="panoptic_fpn_resnet18",
                                     model_args={**MASKRCNN_RECIPE.model_args, "semantic_channels": 64}),
    # LPSNet at the same step budget and optimiser (the seed's SGD + step decay is for 90k-step COCO schedules;
    # from scratch in 200 steps AdamW with warm-up trains, as for Mask R-CNN); narrower heads for the CPU,
    # FCOS's first level up to 32-px objects (nuclei are 10–25 px).
    # Pasting threshold 0.05 (the usual detection threshold), chosen on the 28 training crops: a 200-step focal-loss
    # head is under-confident, and the model's default 0.3 drops true nuclei (train PQ 0.861 at 0.05, 0.858 at 0.1,
    # 0.853 at 0.2, 0.840 at 0.3).
    "lpsnet_resnet18": replace(MASKRCNN_RECIPE, model="lpsnet_resnet18",
                               model_args={"fpn_channels": 128, "head_convs": 2, "semantic_channels": 64, "object_size": 32,
                                           "paste_score_threshold": 0.05}),
    # The baseline: a semantic model (the U-Net with the paper's weight map) + connected components.
    "unet_padded": UNET_RECIPE,
}
