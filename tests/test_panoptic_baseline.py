"""The semantic-model-plus-connected-components baseline of panoptic work (``panoptic_from_labels`` without
instances, ``evaluate_connected_components``) on hand-built maps."""
import numpy as np

from edgeseg.data import get_dataset
from edgeseg.metrics import PanopticEvaluator, panoptic_from_labels


def test_components_split_things_and_keep_one_segment_per_stuff_class():
    labels = np.zeros((8, 8), np.int64)  # 0 stuff (background), 1 stuff, 2 thing
    labels[0, :] = 1
    labels[6:, 6:] = 1                   # a second region of stuff class 1: still one segment
    labels[2:4, 1:3] = 2                 # thing A
    labels[4, 3] = 2                     # touches A only at a corner: 4-connected, so its own segment
    labels[2:5, 5] = 2                   # thing C
    labels[7, 0] = 255                   # ignored
    ids, segments = panoptic_from_labels(labels, [2], ignore_index=255)
    assert ids.dtype == np.int32 and ids.shape == labels.shape
    assert [(s["category"], s["is_thing"], s["area"]) for s in segments] == [
        (0, 0, 64 - 8 - 4 - 1 - 4 - 3 - 1), (1, 0, 12), (2, 1, 4), (2, 1, 3), (2, 1, 1)]
    assert ids[7, 0] == 0 and ids[0, 0] == ids[7, 7] == 2
    assert len({ids[2, 1], ids[4, 3], ids[3, 5]}) == 3  # three components of the thing class
    for s in segments:
        assert (ids == s["id"]).sum() == s["area"] and (labels[ids == s["id"]] == s["category"]).all()

    small = panoptic_from_labels(labels, [2], ignore_index=255, min_area=2)[1]
    assert [s["area"] for s in small if s["is_thing"]] == [4, 3]  # the 1-pixel component is void


def test_components_of_ground_truth_are_perfect_apart_from_touching_instances():
    """Ground truth's own classes through the baseline score PQ 1 on well-separated instances; on nuclei the
    touching nuclei merge, which is why an instance branch is worth having."""
    labels = np.zeros((16, 16), np.int64)
    instances = np.zeros_like(labels)
    labels[2:5, 2:5], instances[2:5, 2:5] = 1, 1
    labels[9:14, 8:12], instances[9:14, 8:12] = 1, 2
    ev = PanopticEvaluator(2, [1])
    ev.add(*panoptic_from_labels(labels, [1]), *panoptic_from_labels(labels, [1], instances))
    assert ev.scores().pq == 1.0

    ds = get_dataset("nuclei", "val")
    ev = PanopticEvaluator(2, [1])
    for i in range(len(ds)):
        ev.add(*panoptic_from_labels(ds.masks[i], [1]), *ds.panoptic(i))
    things = ev.scores().pq_things
    assert 0.5 < things < 1.0, things  # a ceiling below 1: touching nuclei merge into one component


def test_a_data_set_with_other_classes_is_refused_in_one_line():
    """A nuclei-trained panoptic model (2 classes, nucleus a thing) on LiTS (3 classes, tumour a thing): refused
    naming both, before any class index reaches the evaluator."""
    import pytest

    from edgeseg.errors import DataError
    from edgeseg.evaluate import check_panoptic_data
    from edgeseg.export.metadata import ModelMeta

    meta = ModelMeta(model="lpsnet_resnet18", class_names=["background", "nucleus"], in_channels=1, mean=[0.5], std=[0.25],
                     size_divisor=64)
    check_panoptic_data(get_dataset("nuclei", "val"), meta, [1])
    with pytest.raises(DataError, match=r"'lits' has 3 classes \(things \[2\]\) but the model 2 \(things \[1\]\)"):
        check_panoptic_data(get_dataset("lits", "val"), meta, [1])
    lits3 = ModelMeta(model="lpsnet_resnet18", class_names=["bg", "liver", "tumour"], in_channels=1, mean=[0.5],
                      std=[0.25], size_divisor=64)
    with pytest.raises(DataError, match="things"):
        check_panoptic_data(get_dataset("lits", "val"), lits3, [1])


def test_components_become_detections_with_their_class_probability_as_score():
    """The instance-work baseline (``components_as_detections``): one detection per 4-connected component of each
    class asked for, boxed exclusive of the far edge, scored by the mean probability of its class."""
    from edgeseg.metrics.instance import components_as_detections

    labels = np.zeros((6, 8), np.int64)
    labels[1:3, 1:4] = 1          # component A of class 1
    labels[3, 4] = 1              # touches A only at a corner: its own component
    labels[4:6, 6:8] = 2          # class 2
    p = np.zeros((3, 6, 8))
    p[1], p[2] = 0.5, 0.9
    p[1, 1, 1] = 1.1              # A's mean: (5 * 0.5 + 1.1) / 6 = 0.6
    found = components_as_detections(labels, p, [1, 2])
    assert found["labels"].tolist() == [1, 1, 2]
    assert found["boxes"].tolist() == [[1, 1, 4, 3], [4, 3, 5, 4], [6, 4, 8, 6]]
    np.testing.assert_allclose(found["scores"], [0.6, 0.5, 0.9], rtol=1e-6)
    assert found["masks"].shape == (3, 6, 8) and found["masks"].sum((1, 2)).tolist() == [6, 1, 4]
    assert components_as_detections(labels, p, [])["masks"].shape == (0, 6, 8)


def test_components_ap_of_a_semantic_model_and_refusal_of_others():
    """``evaluate_components_ap`` splits a semantic model's decision into components and scores them as
    ``evaluate_instances`` would: a U-Net whose classifier says "nucleus" everywhere gives one whole-crop detection
    per crop, which matches no nucleus (AP 0); one that says "background" everywhere gives no detections at all
    (pycocotools' -1). A model with no class scores to split is refused in one line."""
    import pytest
    import torch

    from edgeseg.errors import DataError
    from edgeseg.evaluate import evaluate_components_ap
    from edgeseg.export import default_meta
    from edgeseg.models import create
    from edgeseg.runtime import open_session

    val = get_dataset("nuclei", "val")
    model = create("unet_padded", num_classes=2, in_channels=1, base_width=4).eval()
    for nucleus_everywhere, ap in ((True, 0.0), (False, -1.0)):
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.copy_(torch.tensor([0.0, 1.0] if nucleus_everywhere else [1.0, 0.0]))
        scores = evaluate_components_ap(open_session(model, "torch", meta=default_meta(model)), val, limit=2,
                                        progress=False)
        assert {k: (s.ap, s.ap50) for k, s in scores.items()} == {"bbox": (ap, ap), "segm": (ap, ap)}
    panoptic = create("lpsnet_resnet18", num_classes=2, in_channels=1, thing_classes=[1]).eval()
    with pytest.raises(DataError, match="not a float-contract softmax semantic model"):
        evaluate_components_ap(open_session(panoptic, "torch", meta=default_meta(panoptic)), val)
