"""Mask R-CNN learns instance segmentation of nuclei: the benchmark's recipe
(``edgeseg.recipes.MASKRCNN_RECIPE``, as benchmarks/instance_train.py trains it), shortened, trained from
random weights on the training crops and scored by pycocotools on the held-out validation crops."""
from dataclasses import replace

from edgeseg.data import get_dataset
from edgeseg.evaluate import evaluate_instances
from edgeseg.recipes import MASKRCNN_RECIPE
from edgeseg.runtime import open_session
from edgeseg.train import train

ITERATIONS = 80
MIN_MASK_AP50 = 0.5  # measured at 80 steps: 0.752 (seed 0), 0.714 (seed 1); 60 steps: 0.593 (seed 0)


def test_maskrcnn_reaches_mask_ap50_on_held_out_nuclei(tmp_path):
    """80 steps of the benchmark recipe (anchors from 8 px, 64 sampled RoIs per image, 256-wide box head,
    64-wide mask head, AdamW 1e-3 with a 10-step warm-up, batch 4 of 128² crops) reach mask AP50 ≥ 0.5 on
    the 7 validation crops (0.71–0.75 over two seeds, so the bound holds with margin; 40 steps gave 0.40,
    60 steps 0.59: too close). The benchmark's 200 steps reach 0.87, and the U-Net + connected-components
    baseline 0.74 (benchmarks/results/instance_train.md); 200 steps would not fit a CI gate."""
    cfg = replace(MASKRCNN_RECIPE, iterations=ITERATIONS, warmup_iters=10)
    _, state = train(cfg, tmp_path / "m.pt", progress=False, log=lambda *a: None)
    assert state["losses"][-1] < state["losses"][0]
    scores = evaluate_instances(open_session(tmp_path / "m.pt", backend="torch"), get_dataset("nuclei", "val"),
                                progress=False)
    assert scores["segm"].ap50 >= MIN_MASK_AP50, scores["segm"].line("segm")
    assert scores["bbox"].ap50 > 0.3, scores["bbox"].line("bbox")
