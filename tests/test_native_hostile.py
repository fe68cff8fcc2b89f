"""Hostile inputs to the native layer: every case that once crashed, overflowed or answered garbage in
libedgeseg_cpu.so or libedgeseg_ort.so is a regression case here. Each one must be refused with a message
naming the input or field, or answered by the rule every implementation shares (plugin READMEs):
NaN/inf boxes and out-of-range batch indices give zeros, NaN scores are never pasted, RoIAlign samples
are capped at 64 per bin axis."""
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from edgeseg import ops
from edgeseg.ops.native import library_path



def lib_or_skip(name):
    try:
        return library_path(name)
    except Exception as e:  # BackendError: not built here
        pytest.skip(str(e))


@pytest.fixture(autouse=True)
def _native_built():
    lib_or_skip("libedgeseg_cpu.so")


NAN, INF = float("nan"), float("inf")


# --- the C ABI through impl="native" ----------------------------------------------------------------

def test_deform_conv_offset_of_the_wrong_size_is_refused_not_written_past():
    x = torch.randn(1, 4, 8, 8)
    w = torch.randn(6, 4, 3, 3)
    offset = torch.randn(1, 18, 8, 8)  # 8×8 (the input's size) but a 3×3 kernel without padding gives 6×6
    with pytest.raises(ValueError, match="offset.*6, 6"):
        ops.deform_conv2d(x, offset, w, impl="native")
    ok = ops.deform_conv2d(x, offset[:, :, :6, :6].contiguous(), w, impl="native")
    ref = ops.deform_conv2d(x, offset[:, :, :6, :6].contiguous(), w)
    torch.testing.assert_close(ok, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("bad, match", [
    (dict(mask=torch.rand(1, 9, 5, 5)), "mask"),             # mask's size differs from the output's
    (dict(mask=torch.rand(2, 9, 6, 6)), "mask"),             # mask's batch differs
    (dict(bias=torch.rand(5)), "bias"),                      # bias for 5 of 6 output channels
    (dict(weight=torch.randn(6, 3, 3, 3)), "weight|'W'"),             # weight channels do not match groups
])
def test_deform_conv_related_inputs_are_checked(bad, match):
    args = dict(input=torch.randn(1, 4, 8, 8), offset=torch.randn(1, 18, 6, 6), weight=torch.randn(6, 4, 3, 3))
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        ops.deform_conv2d(impl="native", **args)


def test_deform_conv_without_mask_or_bias_matches_reference():
    x, off, w = torch.randn(2, 4, 7, 9), torch.randn(2, 18, 5, 7), torch.randn(6, 4, 3, 3)
    torch.testing.assert_close(ops.deform_conv2d(x, off, w, impl="native"), ops.deform_conv2d(x, off, w), atol=1e-4, rtol=1e-4)


def test_dcnv3_offset_and_mask_sizes_are_checked():
    x = torch.randn(1, 8, 8, 4)
    good = dict(kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1), group=2, offset_scale=1.0)
    off, mask = torch.randn(1, 8, 8, 36), torch.rand(1, 8, 8, 18)
    with pytest.raises(ValueError, match="offset"):
        ops.dcnv3(x, off[:, :6], mask, impl="native", **good)
    with pytest.raises(ValueError, match="mask"):
        ops.dcnv3(x, off, mask[..., :9], impl="native", **good)
    with pytest.raises(ValueError, match="group"):
        ops.dcnv3(x, off, mask, impl="native", **{**good, "group": 3})


def boxes5(*rows):
    return torch.tensor(rows, dtype=torch.float32)


@pytest.mark.parametrize("impl", ["torch", "native"])
def test_roi_align_non_finite_boxes_and_bad_batch_indices_give_zeros(impl):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    rois = boxes5([0, 1, 1, 9, 9], [0, NAN, 1, 9, 9], [1, 1, 1, INF, 9], [0, -INF, 1, 9, 9],
                  [-1, 1, 1, 9, 9], [2, 1, 1, 9, 9], [NAN, 1, 1, 9, 9], [1, 1e30, 1e30, 3e38, 3e38])
    out = ops.roi_align(x, rois, (4, 4), 1.0, 2, True, impl=impl)
    assert torch.isfinite(out).all()
    assert out[1:].abs().max() == 0
    want = ops.roi_align(x, rois[:1], (4, 4), 1.0, 2, True)
    torch.testing.assert_close(out[:1], want)


@pytest.mark.parametrize("impl", ["torch", "native"])
def test_roi_align_giant_boxes_are_capped_and_agree(impl):
    x = torch.randn(1, 2, 32, 32)
    # A 458,752-pixel-wide box once overflowed the sample count to 0 (null write); 1e6 px aborted.
    rois = boxes5([0, -229376, 0, 229376, 30], [0, 0, -5e5, 31, 5e5], [0, 0.5, 0.5, 20.5, 30.5])
    out = ops.roi_align(x, rois, (7, 7), 1.0, -1, False, impl=impl)
    assert torch.isfinite(out).all()
    ref = ops.roi_align(x, rois, (7, 7), 1.0, -1, False)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    # Below the cap, torchvision's arithmetic exactly (the third box: 3 samples per bin axis).
    import torchvision
    torch.testing.assert_close(out[2:], torchvision.ops.roi_align(x, rois[2:], (7, 7), 1.0, -1, False))


@pytest.mark.parametrize("impl", ["torch", "native"])
@pytest.mark.parametrize("kw, match", [
    (dict(sampling_ratio=65536), "sampling_ratio"),
    (dict(sampling_ratio=10000), "sampling_ratio"),
    (dict(spatial_scale=NAN), "spatial_scale"),
    (dict(spatial_scale=INF), "spatial_scale"),
    (dict(spatial_scale=0.0), "spatial_scale"),
    (dict(output_size=(0, 7)), "output"),
])
def test_roi_align_attributes_out_of_range_are_refused(impl, kw, match):
    args = dict(output_size=(7, 7), spatial_scale=1.0, sampling_ratio=2, aligned=False)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        ops.roi_align(torch.randn(1, 2, 8, 8), boxes5([0, 1, 1, 5, 5]), impl=impl, **args)


def test_roi_align_rois_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match="K×5|rois"):
        ops.roi_align(torch.randn(1, 2, 8, 8), torch.zeros(3, 4), (2, 2), impl="native")


def test_multilevel_features_must_agree_in_batch_and_channels():
    feats = [torch.randn(1, 4, 16, 16), torch.randn(1, 3, 8, 8)]
    with pytest.raises(ValueError, match="feature map 1"):
        ops.multilevel_roi_align(feats, boxes5([0, 1, 1, 30, 30]), 2, [0.25, 0.125], impl="native")


def test_multilevel_non_finite_boxes_give_zeros_in_both_implementations():
    torch.manual_seed(1)
    feats = [torch.randn(1, 3, 32, 32), torch.randn(1, 3, 16, 16)]
    rois = boxes5([0, 4, 4, 60, 60], [0, NAN, 4, 60, 60], [0, 4, 4, INF, INF], [3, 4, 4, 60, 60])
    for impl in ("torch", "native"):
        out = ops.multilevel_roi_align(feats, rois, 3, [0.25, 0.125], impl=impl)
        assert torch.isfinite(out).all() and out[1:].abs().max() == 0
        assert out[0].abs().max() > 0


def test_paste_masks_needs_one_box_per_mask():
    with pytest.raises(ValueError, match="boxes"):
        ops.paste_masks(torch.rand(3, 14, 14), torch.tensor([[1.0, 1, 9, 9]] * 2), (16, 16), impl="native")


@pytest.mark.parametrize("impl", ["torch", "native"])
def test_paste_masks_non_finite_boxes_paste_nothing(impl):
    masks = torch.rand(5, 7, 7)
    boxes = torch.tensor([[2.0, 2, 12, 12], [NAN, 2, 12, 12], [2, 2, INF, 12], [-INF, -INF, INF, INF],
                          [-3e38, 0, 3e38, 10]])
    out = ops.paste_masks(masks, boxes, (16, 16), threshold=-1, impl=impl)
    assert torch.isfinite(out).all()
    assert out[1:4].abs().max() == 0 and out[0].abs().max() > 0
    # A finite but astronomically large box is a box (clamped corners, no overflow): finite values.
    assert out[4].abs().max() <= 1


@pytest.mark.parametrize("bad, match", [
    (dict(scores=torch.rand(2)), "scores"),
    (dict(classes=torch.zeros(4, dtype=torch.int32)), "classes"),
    (dict(masks=torch.rand(3, 12, 10)), "masks"),
    (dict(num_thing_classes=9), "num_thing_classes"),
    (dict(overlap_threshold=NAN), "overlap_threshold"),
])
def test_panoptic_related_inputs_and_fields_are_checked(bad, match):
    args = dict(semantic=torch.zeros(10, 10, dtype=torch.int32), masks=torch.rand(3, 10, 10), scores=torch.rand(3),
                classes=torch.zeros(3, dtype=torch.int32), num_classes=4, num_thing_classes=2)
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        ops.panoptic_paste(impl="native", **args)


def test_panoptic_nan_scores_rank_last_and_are_never_pasted():
    torch.manual_seed(3)
    semantic = torch.randint(0, 4, (24, 24), dtype=torch.int32)
    masks = (torch.rand(6, 24, 24) > 0.6).float()
    scores = torch.tensor([0.9, NAN, 0.7, NAN, 0.95, 0.6])
    classes = torch.randint(0, 2, (6,), dtype=torch.int32)
    args = dict(num_classes=4, num_thing_classes=2, overlap_threshold=0.9, min_stuff_area=1, score_threshold=0.5)
    ids_n, table_n = ops.panoptic_paste(semantic, masks, scores, classes, impl="native", **args)
    ids_t, table_t = ops.panoptic_paste(semantic, masks, scores, classes, **args)
    assert torch.equal(ids_n, ids_t.to(ids_n.dtype))
    torch.testing.assert_close(table_n, table_t)
    assert not torch.isnan(table_n).any()
    things = table_n[table_n[:, 2] == 1]
    assert len(things) >= 1 and torch.isfinite(things[:, 4]).all()


MERGE_ARGS = dict(num_classes=4, num_thing_classes=2, overlap_threshold=0.5, min_stuff_area=1, score_threshold=0.3)


@pytest.mark.parametrize("rule, bad, match", [
    ("paste", dict(boxes=torch.rand(2, 4)), "boxes"),
    ("paste", dict(boxes=torch.rand(3, 5)), "boxes"),
    ("paste", dict(masks=torch.rand(3, 0, 28)), "masks"),
    ("paste", dict(scores=torch.rand(4)), "scores"),
    ("paste", dict(classes=torch.zeros(2, dtype=torch.int32)), "classes"),
    ("paste", dict(semantic=torch.zeros(0, 10, dtype=torch.int32)), "semantic"),
    ("paste", dict(min_stuff_area=-1), "min_stuff_area"),
    ("paste", dict(score_threshold=NAN), "score_threshold"),
])
def test_panoptic_merge_inputs_and_fields_are_checked(rule, bad, match):
    args = dict(semantic=torch.zeros(10, 12, dtype=torch.int32), masks=torch.rand(3, 28, 28), boxes=torch.rand(3, 4) * 9,
                scores=torch.rand(3), classes=torch.zeros(3, dtype=torch.int32), mask_rule=rule, **MERGE_ARGS)
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        ops.panoptic_merge(impl="native", **args)


def test_panoptic_merge_mask_rule_and_masks_must_agree():
    from edgeseg.ops import native
    sem, boxes = torch.zeros(8, 8, dtype=torch.int32), torch.tensor([[1.0, 1, 6, 6]])
    scores, classes = torch.ones(1), torch.zeros(1, dtype=torch.int32)
    fields = [MERGE_ARGS[k] for k in MERGE_ARGS]
    with pytest.raises(ValueError, match="R×0×0"):  # rule 1 with masks: they would be silently ignored
        native.panoptic_merge(sem, torch.rand(1, 4, 4), boxes, scores, classes, 1, *fields)
    with pytest.raises(ValueError, match="dimension 1 must be at least 1"):  # rule 0 without masks
        native.panoptic_merge(sem, torch.zeros(1, 0, 0), boxes, scores, classes, 0, *fields)
    with pytest.raises(ValueError, match="mask_rule"):
        native.panoptic_merge(sem, torch.zeros(1, 0, 0), boxes, scores, classes, 2, *fields)


@pytest.mark.parametrize("rule", ["paste", "box_class"])
def test_panoptic_merge_non_finite_and_huge_boxes_and_scores(rule):
    """NaN/±inf corners: no pixels; ±3e38 corners: a box covering the image (clamped, no overflow); NaN scores last
    and never pasted. Native equals the reference (the full-size masks into panoptic_paste) exactly."""
    torch.manual_seed(5)
    semantic = torch.randint(0, 4, (20, 24), dtype=torch.int32)
    boxes = torch.tensor([[2.0, 2, 12, 12], [NAN, 2, 12, 12], [2, 2, INF, 12], [-INF, -INF, INF, INF],
                          [-3e38, -3e38, 3e38, 3e38], [5, 5, 4, 4], [-50, -50, -10, -10], [30, 2, 40, 9]])
    masks = torch.rand(8, 6, 6)
    scores = torch.tensor([0.9, 0.95, 0.8, 0.99, 0.5, 0.7, NAN, 0.6])
    classes = torch.tensor([0, 1, 0, 1, 1, 0, 0, 1], dtype=torch.int32)
    ids_n, table_n = ops.panoptic_merge(semantic, masks, boxes, scores, classes, mask_rule=rule, impl="native", **MERGE_ARGS)
    ids_t, table_t = ops.panoptic_merge(semantic, masks, boxes, scores, classes, mask_rule=rule, **MERGE_ARGS)
    assert torch.equal(ids_n, ids_t.to(ids_n.dtype)) and torch.equal(table_n, table_t)
    assert not torch.isnan(table_n).any()
    things = table_n[table_n[:, 2] == 1]
    # only finite boxes with finite scores become segments: not the non-finite-cornered ones (0.95, 0.8, 0.99),
    # though they score highest, nor the NaN score
    assert len(things) >= 1
    assert all(any(abs(v - a) < 1e-6 for a in (0.9, 0.5, 0.7, 0.6)) for v in things[:, 4].tolist())


def test_panoptic_merge_equals_paste_then_panoptic_paste():
    """The box route reads each instance only inside its box and gives what pasting full-size masks gives."""
    torch.manual_seed(6)
    semantic = torch.randint(0, 4, (33, 41), dtype=torch.int32)
    boxes = torch.rand(12, 4) * torch.tensor([41.0, 33, 41, 33])
    boxes[:, 2:] = boxes[:, :2] + torch.rand(12, 2) * 20
    masks, scores = torch.rand(12, 28, 28), torch.rand(12)
    classes = torch.randint(0, 2, (12,), dtype=torch.int32)
    full = ops.paste_masks(masks, boxes, (33, 41), threshold=-1, impl="native")
    ids_p, table_p = ops.panoptic_paste(semantic, full, scores, classes, impl="native", **MERGE_ARGS)
    ids_m, table_m = ops.panoptic_merge(semantic, masks, boxes, scores, classes, impl="native", **MERGE_ARGS)
    assert torch.equal(ids_p, ids_m) and torch.equal(table_p, table_m)
    assert (table_m[:, 2] == 1).sum() >= 2


# --- the ONNX Runtime custom ops, through crafted graphs ------------------------------------------

def ort_session(node, inputs, outputs):
    graph = helper.make_graph([node], "hostile", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("edgeseg", 1)],
                              ir_version=10)
    so = ort.SessionOptions()
    so.register_custom_ops_library(str(lib_or_skip("libedgeseg_ort.so")))
    so.log_severity_level = 4
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def vi(name, dtype, rank):
    return helper.make_tensor_value_info(name, dtype, [None] * rank if rank is not None else None)


F, I32 = TensorProto.FLOAT, TensorProto.INT32


def roi_session(**attrs):
    attrs = {"output_height": 2, "output_width": 2, **attrs}
    node = helper.make_node("EdgeSegRoIAlign", ["x", "rois", "batch"], ["y"], domain="edgeseg", **attrs)
    return ort_session(node, [vi("x", F, 4), vi("rois", F, None), vi("batch", I32, None)], [vi("y", F, 4)])


def test_ort_rois_of_rank_zero_and_mismatched_batch_are_refused():
    s = roi_session()
    x = np.random.rand(1, 2, 8, 8).astype(np.float32)
    with pytest.raises(Exception, match="rois"):
        s.run(None, {"x": x, "rois": np.array(3.0, np.float32), "batch": np.zeros(1, np.int32)})
    with pytest.raises(Exception, match="batch_indices"):
        s.run(None, {"x": x, "rois": np.ones((2, 4), np.float32), "batch": np.zeros(3, np.int32)})


def test_ort_roi_align_nan_boxes_and_bad_batch_give_zeros():
    s = roi_session(sampling_ratio=2)
    x = np.random.rand(2, 2, 8, 8).astype(np.float32)
    rois = np.array([[1, 1, 6, 6], [NAN, 1, 6, 6], [1, 1, 6, 6], [1, 1, 6, 6]], np.float32)
    (y,) = s.run(None, {"x": x, "rois": rois, "batch": np.array([0, 0, -1, 2], np.int32)})
    assert np.isfinite(y).all() and np.abs(y[1:]).max() == 0 and np.abs(y[0]).max() > 0


@pytest.mark.parametrize("attrs, match", [
    (dict(sampling_ratio=65536), "sampling_ratio"),
    (dict(spatial_scale=float("nan")), "spatial_scale"),
    (dict(output_height=0), "output_height"),
    (dict(output_height=2.5), "output_height"),   # a float where the spec says int: refused, not defaulted
    (dict(spatial_scale=[1.0, 2.0]), "spatial_scale"),
])
def test_ort_roi_align_fields_are_checked(attrs, match):
    x = np.random.rand(1, 2, 8, 8).astype(np.float32)
    feed = {"x": x, "rois": np.ones((1, 4), np.float32), "batch": np.zeros(1, np.int32)}
    with pytest.raises(Exception, match=match):
        roi_session(**attrs).run(None, feed)


def test_ort_dcnv3_one_value_kernel_is_refused():
    node = helper.make_node("EdgeSegDCNv3", ["x", "o", "m"], ["y"], domain="edgeseg", kernel=[3])
    with pytest.raises(Exception, match="kernel"):
        s = ort_session(node, [vi("x", F, 4), vi("o", F, 4), vi("m", F, 4)], [vi("y", F, 4)])
        s.run(None, {"x": np.zeros((1, 4, 4, 2), np.float32), "o": np.zeros((1, 2, 2, 18), np.float32),
                     "m": np.zeros((1, 2, 2, 9), np.float32)})


def test_ort_deform_conv_sizes_output_by_the_convolution_formula():
    node = helper.make_node("EdgeSegDeformConv2d", ["x", "w", "o", "b", "m"], ["y"], domain="edgeseg",
                            stride=[1, 1], padding=[0, 0], dilation=[1, 1], groups=1, offset_groups=1)
    s = ort_session(node, [vi("x", F, 4), vi("w", F, 4), vi("o", F, 4), vi("b", F, 1), vi("m", F, None)], [vi("y", F, 4)])
    feed = {"x": np.random.rand(1, 2, 8, 8).astype(np.float32), "w": np.random.rand(3, 2, 3, 3).astype(np.float32),
            "o": np.zeros((1, 18, 8, 8), np.float32), "b": np.zeros(0, np.float32), "m": np.zeros(0, np.float32)}
    with pytest.raises(Exception, match="offset"):
        s.run(None, feed)  # once: output sized 8×8 from the offset, written at 6×6 — a heap overflow
    feed["o"] = np.zeros((1, 18, 6, 6), np.float32)
    (y,) = s.run(None, feed)  # empty bias and mask: absent (the one definition the plugin and surgery share)
    assert y.shape == (1, 3, 6, 6)
    # Any rank: a 4-D mask and a 2-D bias with no elements are absent too, and give the same result.
    s4 = ort_session(node, [vi("x", F, 4), vi("w", F, 4), vi("o", F, 4), vi("b", F, None), vi("m", F, None)],
                     [vi("y", F, 4)])
    (y4,) = s4.run(None, {**feed, "b": np.zeros((3, 0), np.float32), "m": np.zeros((1, 0, 6, 6), np.float32)})
    np.testing.assert_array_equal(y4, y)
    with pytest.raises(Exception, match="bias"):  # a scalar has one element: present, and not Cout
        s4.run(None, {**feed, "b": np.zeros((), np.float32)})


def test_ort_multilevel_features_of_another_type_are_refused():
    node = helper.make_node("EdgeSegMultilevelRoIAlign", ["rois", "batch", "f0", "f1"], ["y"], domain="edgeseg",
                            output_height=2, output_width=2, spatial_scales=[0.25, 0.125], first_level=2)
    s = ort_session(node, [vi("rois", F, 2), vi("batch", I32, 1), vi("f0", F, 4), vi("f1", TensorProto.DOUBLE, 4)],
                    [vi("y", F, 4)])
    feed = {"rois": np.ones((1, 4), np.float32), "batch": np.zeros(1, np.int32),
            "f0": np.zeros((1, 2, 8, 8), np.float32), "f1": np.zeros((1, 2, 4, 4), np.float64)}
    with pytest.raises(Exception, match="float32"):
        s.run(None, feed)


def test_ort_panoptic_with_fewer_scores_than_masks_is_refused():
    node = helper.make_node("EdgeSegPanopticPaste", ["s", "m", "sc", "c"], ["ids", "seg"], domain="edgeseg",
                            num_classes=3, num_thing_classes=1)
    s = ort_session(node, [vi("s", I32, 2), vi("m", F, 3), vi("sc", F, 1), vi("c", I32, 1)],
                    [vi("ids", I32, 2), vi("seg", F, 2)])
    feed = {"s": np.zeros((6, 6), np.int32), "m": np.ones((3, 6, 6), np.float32), "sc": np.ones(2, np.float32),
            "c": np.zeros(3, np.int32)}
    with pytest.raises(Exception, match="scores"):
        s.run(None, feed)
    feed["sc"] = np.array([NAN, 0.9, NAN], np.float32)
    ids, seg = s.run(None, feed)
    assert set(np.unique(ids)) <= {1, 2} and not np.isnan(seg).any()
    assert seg[0, 4] == pytest.approx(0.9)  # the one finite score is pasted first; NaN never


def test_ort_panoptic_merge_refuses_mismatched_boxes_and_runs_both_rules():
    def session(rule):
        node = helper.make_node("EdgeSegPanopticMerge", ["s", "m", "b", "sc", "c"], ["ids", "seg"], domain="edgeseg",
                                num_classes=3, num_thing_classes=1, min_stuff_area=1, mask_rule=rule)
        return ort_session(node, [vi("s", I32, 2), vi("m", F, 3), vi("b", F, 2), vi("sc", F, 1), vi("c", I32, 1)],
                           [vi("ids", I32, 2), vi("seg", F, 2)])
    feed = {"s": np.zeros((6, 6), np.int32), "m": np.ones((2, 4, 4), np.float32),
            "b": np.array([[0, 0, 3, 3], [NAN, 0, 5, 5]], np.float32), "sc": np.array([0.9, 0.95], np.float32),
            "c": np.zeros(2, np.int32)}
    s0 = session(0)
    with pytest.raises(Exception, match="boxes"):
        s0.run(None, {**feed, "b": feed["b"][:1]})
    ids, seg = s0.run(None, feed)
    # torchvision's paste: the 4×4 ones (zero ring around) cover the box's inner 2×2; the NaN box pastes nothing
    assert (ids == 1).sum() == 4 and ids[1, 1] == 1 and seg[0, 4] == pytest.approx(0.9, abs=1e-6) and seg[1, 0] == 0
    s1 = session(1)
    with pytest.raises(Exception, match="R×0×0"):
        s1.run(None, feed)
    ids, seg = s1.run(None, {**feed, "m": np.zeros((2, 0, 0), np.float32)})
    assert ids[0, 0] == 1 and ids[3, 3] == 0 and (ids == 1).sum() == 9  # centres 0.5..2.5 lie in [0, 3]
    with pytest.raises(Exception, match="mask_rule"):  # ranges are the validation layer's, checked at run time
        session(2).run(None, feed)


# --- found by the fuzz targets (plugins/fuzz, tests/test_fuzz_native.py) -------------------------

def test_fuzz_found_nan_far_corner_unaligned_gives_zeros():
    x = torch.randn(1, 2, 8, 8)
    rois = boxes5([0, 1, 1, NAN, 5], [0, 1, 1, 5, -INF])
    for impl in ("torch", "native"):
        out = ops.roi_align(x, rois, (2, 2), 1.0, 2, False, impl=impl)
        assert out.abs().max() == 0, impl  # once pooled: the unaligned clamp turned NaN into 1


def test_fuzz_found_empty_batch_with_rois_gives_zeros():
    out = ops.roi_align(torch.zeros(0, 3, 8, 8), boxes5([0, 1, 1, 5, 5]), (2, 2), impl="native")
    assert out.shape == (1, 3, 2, 2) and out.abs().max() == 0  # every batch index is out of range


def test_fuzz_found_rank_above_eight_is_refused():
    import ctypes

    from edgeseg.ops import native
    x = native._Tensor(None, 9, (ctypes.c_int64 * 8)(*[1] * 8))  # rank 9: dims beyond the struct were once read
    other = native._t(np.zeros((1, 1, 1, 1), np.float32))
    out = native._Tensor()
    lib = native._lib()
    assert lib.es_dcnv3(ctypes.byref(x), ctypes.byref(other), ctypes.byref(other), 3, 3, 1, 1, 1, 1, 1, 1, 1,
                        ctypes.c_float(1.0), ctypes.byref(out)) == -1
    assert b"rank" in lib.es_last_error()


def test_fuzz_found_left_out_input_is_refused_when_the_session_is_created():
    node = helper.make_node("EdgeSegDeformConv2d", ["x", "w", "o", "", "m"], ["y"], domain="edgeseg")
    with pytest.raises(Exception, match="left out"):  # once: a SIGSEGV inside ONNX Runtime's lite wrapper
        ort_session(node, [vi("x", F, 4), vi("w", F, 4), vi("o", F, 4), vi("m", F, None)], [vi("y", F, 4)])
