"""LPSNet, the one-stage panoptic network: output contract at two sizes, border-ness and the mask-based
positive samples on hand-built targets, losses that train, and export in both flavours checked in ONNX Runtime
against PyTorch segment id by segment id."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgeseg.errors import ModelError
from edgeseg.models import create, list_models
from edgeseg.models.detection import PANOPTIC_OUTPUTS
from edgeseg.models.detection.lpsnet import adaptive_pool_matrix, assign_locations, borderness, locations
from edgeseg.models.registry import check_args
from edgeseg.ops.native import plugin_dir

SMALL = dict(max_detections=6, fpn_channels=32, head_convs=1, semantic_channels=16, candidates_per_level=30)


def small(seed=0, name="lpsnet_resnet18", **kw):
    torch.manual_seed(seed)
    return create(name, num_classes=3, in_channels=3, **{"thing_classes": [1, 2], **SMALL, **kw})


@pytest.fixture(scope="module", params=["lpsnet_resnet18", "lpsnet_internimage_cpu"])
def model(request):
    return small(name=request.param).eval()


def test_zoo_lists_lpsnet_as_panoptic_and_checks_thing_classes():
    assert {"lpsnet_resnet18", "lpsnet_resnet50", "lpsnet_internimage_t", "lpsnet_internimage_cpu"} <= set(
        list_models("panoptic"))
    check_args("lpsnet_resnet50", num_classes=3, thing_classes=[1, 2], fpn_channels=64)
    for bad in ([], [2000], ["1"], 1, [True]):
        with pytest.raises(ModelError, match="thing_classes"):
            check_args("lpsnet_resnet18", num_classes=3, thing_classes=bad)
    with pytest.raises(ModelError, match="proper subset"):
        create("lpsnet_resnet18", num_classes=2, thing_classes=[0, 1], **SMALL)
    assert create("lpsnet_resnet18", num_classes=2, in_channels=1, **SMALL).thing_classes == [1]  # default: all but 0


@pytest.mark.parametrize("size", [(64, 64), (128, 192)])
def test_output_contract(model, size):
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert tuple(out) == PANOPTIC_OUTPUTS
    assert out["panoptic"].shape == (2, *size) and out["panoptic"].dtype == torch.int32
    assert out["segments"].shape == (2, 6 + 1, 5) and out["segments"].dtype == torch.float32  # D + 1 stuff class
    assert out["semantic_logits"].shape == (2, 3, *size)
    for pan, seg in zip(out["panoptic"], out["segments"]):
        used = seg[seg[:, 0] > 0]
        assert set(pan.unique().tolist()) <= {0, *used[:, 0].int().tolist()}
        things = used[used[:, 2] == 1]
        assert set(things[:, 1].int().tolist()) <= {1, 2} and (used[used[:, 2] == 0][:, 1] == 0).all()
        for row in used:  # each segment's area is its pixel count
            assert int((pan == int(row[0])).sum()) == int(row[3])


def test_merge_on_boxes_equals_the_full_size_mask_route():
    """Issue 17: the merge reads boxes (rule "box_class"), not D full-image masks; eager outputs are those of the route
    before (the D×H×W masks of ``instance_masks`` into ``panoptic_paste``), and the native launcher reads each
    instance only inside its box with the same result."""
    from edgeseg.models.detection.postprocess import panoptic_merge
    model = spread_scores(small(seed=2, paste_score_threshold=0.05, min_stuff_area=16))
    x = torch.randn(2, 3, 128, 192, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out = model(x)
        levels = model.features(x)
        semantic = model.semantic_head(levels, x)
        boxes, scores, labels, found = model.detect(model.box_head(levels[1:]), x)
        masks = model.instance_masks(boxes, labels, found, semantic)
        before = panoptic_merge(semantic, masks, scores, labels, model.thing_classes, model.overlap_threshold,
                                model.min_stuff_area, model.paste_score_threshold)
    assert (out["segments"][..., 2] == 1).sum() >= 2  # instances were merged, not only stuff
    assert torch.equal(out["panoptic"], before["panoptic"]) and torch.equal(out["segments"], before["segments"])
    if (plugin_dir() / "libedgeseg_cpu.so").is_file():
        from edgeseg import ops
        from edgeseg.models.detection.postprocess import thing_first_order
        order = torch.tensor(thing_first_order(3, model.thing_classes))
        pos = torch.argsort(order)
        for i in range(2):
            boxed = torch.where(found[i, :, None], boxes[i], torch.zeros_like(boxes[i]))
            args = (pos[semantic[i].argmax(0)], None, boxed, scores[i], pos[labels[i]], 3, 2, "box_class",
                    model.overlap_threshold, model.min_stuff_area, model.paste_score_threshold)
            ids_n, table_n = ops.panoptic_merge(*args, impl="native")
            ids_t, table_t = ops.panoptic_merge(*args)
            assert torch.equal(ids_n, ids_t) and torch.equal(table_n, table_t)


def test_borderness_formula():
    ltrb = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 5.0, 5.0, 5.0], [0.0, 1.0, 2.0, 1.0]])
    assert borderness(ltrb).tolist() == pytest.approx([math.sqrt(1 / 3 * 2 / 4), 1.0, 0.0])


def test_positive_samples_are_inside_the_mask_and_ambiguity_goes_by_borderness():
    h = w = 32
    masks = torch.zeros(2, h, w, dtype=torch.uint8)
    masks[0, 0:16, 0:4] = 1   # an L: its box is 0..16 × 0..16, its mask only the left column and the bottom row
    masks[0, 12:16, 0:16] = 1
    masks[1, 8:24, 8:24] = 1  # a square overlapping the L's bottom row
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0], [8.0, 8.0, 24.0, 24.0]])
    points = torch.tensor([[2.5, 2.5],     # L's mask only
                           [10.5, 4.5],    # inside the L's box, outside its mask and the square: background
                           [12.5, 14.5],   # inside both masks: ambiguous
                           [20.5, 20.5],   # square only
                           [30.5, 30.5]])  # nothing
    ranges = torch.tensor([[0.0, 64.0]]).expand(5, 2)
    b_l = borderness(torch.tensor([12.5 - 0, 14.5 - 0, 16 - 12.5, 16 - 14.5])).item()        # ≈ 0.32
    b_sq = borderness(torch.tensor([12.5 - 8, 14.5 - 8, 24 - 12.5, 24 - 14.5])).item()     # ≈ 0.55
    assert b_l < b_sq
    for pred, want in ((b_l, 0), (b_sq, 1), (0.0, 0), (1.0, 1)):
        predicted = torch.full((5,), 0.5)
        predicted[2] = pred
        assert assign_locations(points, ranges, boxes, masks, predicted).tolist() == [0, -1, want, 1, -1]
    # a thing too large for the level is no positive there (FCOS's size ranges)
    assert assign_locations(points, torch.tensor([[0.0, 8.0]]).expand(5, 2), boxes, masks).tolist() == [-1] * 5
    assert assign_locations(points, ranges, boxes[:0], masks[:0]).tolist() == [-1] * 5
    # the locations of a level: pixel centres of (j·s + s/2, i·s + s/2)
    assert locations(torch.zeros(1, 1, 2, 3), 8).tolist() == [[4.5, 4.5], [12.5, 4.5], [20.5, 4.5],
                                                              [4.5, 12.5], [12.5, 12.5], [20.5, 12.5]]


def test_pyramid_pooling_matrix_equals_adaptive_avg_pool():
    x = torch.randn(2, 3, 5, 7)
    for bins in (1, 2, 3, 6):
        ph, pw = adaptive_pool_matrix(5, bins, x), adaptive_pool_matrix(7, bins, x)
        ours = torch.einsum("ih,nchw,jw->ncij", ph, x, pw)
        assert torch.allclose(ours, F.adaptive_avg_pool2d(x, bins), atol=1e-6)


def _batch(n=2, size=64):
    """Two things of class 1 and 2 on stuff class 0, with their id·256 + class map."""
    from edgeseg.train import instance_targets

    g = torch.Generator().manual_seed(3)
    mask = torch.zeros(n, size, size, dtype=torch.int64)
    mask[:, 8:28, 10:34] = 1 * 256 + 1
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    mask[:, ((yy - 44) ** 2 + (xx - 42) ** 2) < 100] = 2 * 256 + 2
    x = torch.randn(n, 3, size, size, generator=g) * 0.3 + (mask % 256).float()[:, None] * 0.8
    return x, instance_targets(mask)


def test_losses_are_finite_and_training_reduces_them():
    model = small(seed=1).train()
    x, targets = _batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    totals = []
    for _ in range(6):
        losses = model(x, targets)
        assert set(losses) == {"loss_cls", "loss_box", "loss_borderness", "loss_semantic"}
        assert all(torch.isfinite(v) for v in losses.values())
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        totals.append(loss.item())
    assert totals[-1] < 0.8 * totals[0], totals
    # an image without things: the thing losses are zero, still part of the graph
    empty = [{**t, "boxes": t["boxes"][:0], "labels": t["labels"][:0], "masks": t["masks"][:0]} for t in targets]
    losses = model(x, empty)
    assert losses["loss_box"].item() == 0.0 and losses["loss_cls"].item() > 0
    sum(losses.values()).backward()


def test_trains_on_nuclei_through_edgeseg_train(tmp_path):
    from edgeseg.models.checkpoint import load_checkpoint
    from edgeseg.train import TrainConfig, train

    cfg = TrainConfig(model="lpsnet_resnet18", dataset="nuclei", iterations=2, batch_size=2, crop=64,
                      model_args=dict(SMALL))
    _, state = train(cfg, tmp_path / "m.pt", progress=False, log=lambda *a: None)
    assert state["iteration"] == 2 and np.isfinite(state["losses"][-1])
    model, payload = load_checkpoint(tmp_path / "m.pt")
    assert payload["meta"]["task"] == "panoptic" and model.thing_classes == [1] and model.max_detections == 6


def spread_scores(model, seed=0):
    """Random heads give every location the same ~0.01 class score (near-ties, none above the candidate
    threshold); trained ones do not. Class and border-ness logits get a spread of about 3."""
    g = torch.Generator().manual_seed(seed)
    seen = []
    head = model.box_head
    hooks = [head.cls_tower.register_forward_hook(lambda m, i, o: seen.append(("cls", o))),
             head.box_tower.register_forward_hook(lambda m, i, o: seen.append(("box", o)))]
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, 64, 64, generator=g))
        for h in hooks:
            h.remove()
        for conv, kind in ((head.cls, "cls"), (head.border, "box")):
            feats = torch.cat([o.flatten(2) for k, o in seen if k == kind], 2)
            fan = feats.norm(dim=1).mean() * 3  # a 3×3 conv sums 9 of these vectors
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 3.0 / (fan + 1e-6))
            conv.bias.zero_()
    return model


def export_and_compare(model, flavour, path, sample, sizes=((64, 64), (128, 192)), seed=5):
    """Export ``model`` (scores spread) in ``flavour``, run it in ONNX Runtime at ``sizes`` (batch: the sample's)
    and check the segment ids against PyTorch's on >= 99.5 % of pixels, with pasted instances among them.
    Returns the graph's node kinds. (The built-in check of ``edgeseg.export_onnx`` runs at the sample only.)"""
    if flavour == "tensorrt" and not (plugin_dir() / "libedgeseg_ort.so").is_file():
        pytest.skip("libedgeseg_ort.so not built (scripts/build_plugins.sh could not fetch ONNX Runtime's headers)")
    import onnx

    from edgeseg.export import export_onnx
    from edgeseg.runtime import open_session

    meta = export_onnx(model, path, flavour=flavour, sample=sample)
    assert meta.task == "panoptic" and meta.max_detections == model.max_detections and meta.size_divisor == 64
    kinds = {n.op_type for n in onnx.load(str(path)).graph.node}
    if flavour == "tensorrt":  # the DCNv2 semantic head and the merge are plugin nodes
        assert {"EdgeSegDeformConv2d", "EdgeSegPanopticMerge"} <= kinds and "DeformConv" not in kinds
        assert "EdgeSegPanopticPaste" not in kinds  # the merge reads boxes, not N×D×H×W masks
    else:
        assert "DeformConv" in kinds and "NonMaxSuppression" in kinds and not any(k.startswith("EdgeSeg") for k in kinds)
    session = open_session(path)
    g = torch.Generator().manual_seed(seed)
    agree = total = things = 0
    for size in sizes:
        x = torch.randn(sample.shape[0], sample.shape[1], *size, generator=g)
        out = session.run(x.numpy())
        with torch.no_grad():
            ref = model(x)
        assert out["panoptic"].dtype == np.int32 and out["panoptic"].shape == (sample.shape[0], *size)
        agree += int((out["panoptic"] == ref["panoptic"].numpy()).sum())
        total += out["panoptic"].size
        things += int((ref["segments"][..., 2] == 1).sum())
    print(f"{flavour}: segment ids agree on {100 * agree / total:.3f}% of {total} pixels, {things} thing segments")
    assert things > 0  # the check saw pasted instances, not only stuff
    assert agree / total >= 0.995, f"segment ids agree on {100 * agree / total:.3f}% of pixels"
    return kinds


@pytest.mark.slow  # the dynamo exporter takes 3-5 minutes over this graph on 2 cores (legacy cannot: DeformConv)
@pytest.mark.parametrize("flavour", ["portable", "tensorrt"])
def test_export_matches_pytorch_in_onnxruntime(flavour, tmp_path):
    """ONNX Runtime against PyTorch on random weights whose scores are spread, at two sizes, batch 2: the same
    segment id on >= 99.5 % of pixels."""
    model = spread_scores(small(seed=2, paste_score_threshold=0.05, min_stuff_area=16))
    # traced at batch 2 and where P7 is 2×2: a size of 1 in the sample would be fixed in the graph
    export_and_compare(model, flavour, tmp_path / "m.onnx", torch.randn(2, 3, 192, 192))


# Measured on 2 cores at load ~7 (other jobs): portable 124 s, tensorrt 70 s wall, 1 min 46 s of CPU time for both
# (the dynamo exporter); on an unloaded machine under 2 minutes together.
@pytest.mark.slow
@pytest.mark.parametrize("flavour", ["portable", "tensorrt"])
def test_resnet50_export_matches_pytorch_in_onnxruntime(flavour, tmp_path):
    """lpsnet_resnet50 (random weights, scores spread; the R18 tests' reduced head widths): the same segment ids
    in ONNX Runtime as in PyTorch on >= 99.5 % of pixels at two sizes, batch 1."""
    model = spread_scores(small(seed=2, name="lpsnet_resnet50", paste_score_threshold=0.05, min_stuff_area=16))
    export_and_compare(model, flavour, tmp_path / "m.onnx", torch.randn(1, 3, 192, 192))


def test_zoo_panoptic_model_metadata_records_its_thing_classes():
    """Issue 19.1: a zoo panoptic model created with its default thing classes exports through the Python API with
    them in its metadata (before, its config held none and the export's check refused the model)."""
    from edgeseg.evaluate import thing_classes_of
    from edgeseg.export import default_meta

    for name in ("lpsnet_resnet18", "panoptic_fpn_resnet18"):
        model = create(name, num_classes=5, in_channels=3)
        assert thing_classes_of(default_meta(model)) == [1, 2, 3, 4]
