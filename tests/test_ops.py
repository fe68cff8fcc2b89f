"""The custom ops: the PyTorch references against torchvision (and independent grid_sample forms),
the native CPU launchers (the math core the CUDA kernels share) against the references."""
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torchvision.ops import MultiScaleRoIAlign

from edgeseg import ops

IMPLS = ["torch", "native"]


def random_rois(n_images, k, h, w, generator=None):
    """Boxes of every awkward kind: inside, partly and wholly outside, zero and negative size, huge."""
    xy = torch.rand(k, 2) * torch.tensor([w, h]) * 1.4 - torch.tensor([w, h]) * 0.2
    wh = torch.randn(k, 2).abs() * torch.tensor([w, h]) * 0.4
    boxes = torch.cat([xy, xy + wh], 1)
    boxes[0] = torch.tensor([2.0, 3.0, 2.0, 3.0])  # zero size
    boxes[1] = torch.tensor([5.0, 6.0, 1.0, 2.0])  # negative size
    boxes[2] = torch.tensor([-40.0, -30.0, w * 9.0, h * 7.0])  # huge
    boxes[3] = torch.tensor([-20.0, -20.0, -5.0, -8.0])  # wholly outside
    batch = torch.randint(0, n_images, (k, 1)).float()
    return torch.cat([batch, boxes], 1)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 2])
def test_roi_align_equals_torchvision(impl, aligned, sampling_ratio):
    for trial in range(3):
        n, c, h, w = 1 + trial, 2 + trial, 9 + 5 * trial, 13 + 3 * trial
        x = torch.randn(n, c, h, w)
        rois = random_rois(n, 12, h * 4, w * 4)
        scale = 0.25
        out = ops.roi_align(x, rois, (4 + trial, 3 + trial), scale, sampling_ratio, aligned, impl=impl)
        ref = torchvision.ops.roi_align(x, rois, (4 + trial, 3 + trial), scale, sampling_ratio, aligned)
        torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
def test_roi_align_box_list_and_empty(impl):
    x = torch.randn(2, 3, 10, 12)
    per_image = [torch.tensor([[1.0, 1.0, 6.0, 8.0]]), torch.tensor([[0.0, 2.0, 11.0, 9.5], [3.0, 3.0, 4.0, 4.0]])]
    out = ops.roi_align(x, per_image, 3, impl=impl)
    torch.testing.assert_close(out, torchvision.ops.roi_align(x, per_image, 3), atol=1e-5, rtol=1e-5)
    empty = ops.roi_align(x, torch.zeros(0, 5), (2, 2), impl=impl)
    assert empty.shape == (0, 3, 2, 2)


def test_roi_align_gradcheck():
    x = torch.randn(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0.7, 1.2, 4.3, 5.1], [0, 2.2, 0.3, 6.6, 3.9]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: ops.roi_align(t, rois, (2, 3), 1.0, 2, True), (x,))
    out = ops.roi_align(x, rois, (2, 3), 1.0, 2, True).sum()
    ref = torchvision.ops.roi_align(x, rois, (2, 3), 1.0, 2, True).sum()
    g, = torch.autograd.grad(out, x)
    g_ref, = torch.autograd.grad(ref, x)
    torch.testing.assert_close(g, g_ref)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("aligned", [False, True])
def test_multilevel_roi_align_equals_torchvision_multiscale(impl, aligned):
    image = (256, 320)
    feats = {f"p{i}": torch.randn(2, 4, image[0] // 2**i, image[1] // 2**i) for i in range(2, 6)}
    boxes = []
    for _ in range(2):
        xy = torch.rand(30, 2) * torch.tensor([300.0, 240.0])
        wh = torch.rand(30, 2) * 280 + 2
        boxes.append(torch.cat([xy, xy + wh], 1))
    pooler = MultiScaleRoIAlign(list(feats), 7, sampling_ratio=2)
    ref = pooler(feats, boxes, [image, image])
    if aligned:  # torchvision's pooler is not aligned: compare with per-level aligned roi_align instead
        rois = ops.roi_align.__globals__["as_rois"](boxes)
        level = ops.fpn_levels(rois, 2, 5)
        ref = torch.stack([torchvision.ops.roi_align(list(feats.values())[lv][None, :].squeeze(0), rois[i:i + 1], 7,
                                                      2.0 ** -(lv + 2), 2, True)[0] for i, lv in enumerate(level.tolist())])
    out = ops.multilevel_roi_align(list(feats.values()), boxes, 7, [1 / 4, 1 / 8, 1 / 16, 1 / 32], 2, aligned, impl=impl)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-5)


DCN_CASES = [  # (n, cin, h, w, cout, k, stride, pad, dil, groups, offset_groups, mask, bias)
    (1, 4, 9, 11, 6, 3, 1, 1, 1, 1, 1, True, True),
    (2, 4, 9, 11, 6, 3, 2, 1, 1, 2, 2, True, False),
    (2, 6, 8, 7, 4, 3, 1, 2, 2, 2, 3, False, True),
    (1, 8, 10, 10, 8, (3, 1), (1, 2), (1, 0), 1, 4, 2, True, True),
    (3, 2, 5, 6, 3, 1, 1, 0, 1, 1, 1, True, True),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", DCN_CASES)
def test_deform_conv2d_equals_torchvision(impl, case):
    n, cin, h, w, cout, k, stride, pad, dil, groups, og, use_mask, use_bias = case
    kh, kw = (k, k) if isinstance(k, int) else k
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    ph, pw = (pad, pad) if isinstance(pad, int) else pad
    ho, wo = (h + 2 * ph - dil * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dil * (kw - 1) - 1) // sw + 1
    x = torch.randn(n, cin, h, w)
    weight = torch.randn(cout, cin // groups, kh, kw)
    offset = torch.randn(n, 2 * og * kh * kw, ho, wo) * 3  # reaches well outside the image
    mask = torch.rand(n, og * kh * kw, ho, wo) if use_mask else None
    bias = torch.randn(cout) if use_bias else None
    out = ops.deform_conv2d(x, offset, weight, bias, (sh, sw), (ph, pw), dil, mask, impl=impl)
    ref = torchvision.ops.deform_conv2d(x, offset, weight, bias, (sh, sw), (ph, pw), dil, mask)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_deform_conv2d_gradcheck():
    d = dict(dtype=torch.float64, requires_grad=True)
    x, w = torch.randn(1, 2, 5, 5, **d), torch.randn(2, 2, 3, 3, **d)
    # Offsets away from integers: the bilinear weights are not differentiable at grid points.
    offset = (torch.rand(1, 18, 5, 5, dtype=torch.float64) * 0.8 + 0.1).requires_grad_()
    mask = torch.rand(1, 9, 5, 5, **d)
    assert torch.autograd.gradcheck(lambda *t: ops.deform_conv2d(t[0], t[1], t[2], None, 1, 1, 1, t[3]), (x, offset, w, mask))


def dcnv3_by_grid_sample(x, offset, mask, k, stride, pad, dil, group, scale):
    """InternImage's formulation, written independently: normalised sampling grids and grid_sample."""
    n, h, w, c = x.shape
    ho, wo = (h + 2 * pad - dil * (k - 1) - 1) // stride + 1, (w + 2 * pad - dil * (k - 1) - 1) // stride + 1
    xp = F.pad(x, (0, 0, pad, pad, pad, pad))
    hp, wp = h + 2 * pad, w + 2 * pad
    centre = (dil * (k - 1)) // 2
    ref_y = torch.arange(ho) * stride + centre + 0.5
    ref_x = torch.arange(wo) * stride + centre + 0.5
    taps = [(i * dil - centre, j * dil - centre) for i in range(k) for j in range(k)]
    out = torch.zeros(n, ho, wo, c)
    cg = c // group
    off = offset.reshape(n, ho, wo, group, k * k, 2)
    m = mask.reshape(n, ho, wo, group, k * k)
    for g in range(group):
        img = xp[..., g * cg:(g + 1) * cg].permute(0, 3, 1, 2)
        for t, (dy, dx) in enumerate(taps):
            py = ref_y[:, None] + dy * scale + off[:, :, :, g, t, 1] * scale
            px = ref_x[None, :] + dx * scale + off[:, :, :, g, t, 0] * scale
            grid = torch.stack([px / wp * 2 - 1, py / hp * 2 - 1], -1)
            s = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            out[..., g * cg:(g + 1) * cg] += s.permute(0, 2, 3, 1) * m[..., g, t, None]
    return out


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("k,stride,pad,dil,group,scale", [(3, 1, 1, 1, 2, 1.0), (3, 2, 1, 1, 4, 0.5), (5, 1, 4, 2, 1, 2.0), (1, 1, 0, 1, 2, 1.0)])
def test_dcnv3_equals_grid_sample_formulation(impl, k, stride, pad, dil, group, scale):
    n, h, w, c = 2, 9, 11, 8
    ho, wo = (h + 2 * pad - dil * (k - 1) - 1) // stride + 1, (w + 2 * pad - dil * (k - 1) - 1) // stride + 1
    x = torch.randn(n, h, w, c)
    offset = torch.randn(n, ho, wo, group * k * k * 2) * 2
    mask = torch.randn(n, ho, wo, group, k * k).softmax(-1).reshape(n, ho, wo, -1)
    out = ops.dcnv3(x, offset, mask, k, stride, pad, dil, group, scale, impl=impl)
    torch.testing.assert_close(out, dcnv3_by_grid_sample(x, offset, mask, k, stride, pad, dil, group, scale), atol=1e-5, rtol=1e-5)


def test_dcnv3_module_starts_as_plain_kernel_average_and_trains():
    block = ops.DCNv3(8, kernel_size=3, group=2)
    x = torch.randn(2, 8, 10, 12, requires_grad=True)
    y = block(x)
    assert y.shape == x.shape
    # Zero offsets and a uniform softmax: the core is a 3×3 box average of input_proj(x) (zero padded).
    proj = block.input_proj(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    box = F.avg_pool2d(proj, 3, 1, 1, count_include_pad=True)
    expected = block.output_proj(box.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5)
    y.square().mean().backward()
    assert block.offset.weight.grad.abs().sum() > 0 and block.mask.weight.grad.abs().sum() > 0


# Awkward boxes: fractional, partly and wholly outside, negative corners (truncated toward zero),
# zero-size, inverted, tiny, huge, on integer boundaries.
AWKWARD_BOXES = [[3.2, 4.1, 25.7, 19.9], [-5.0, -5.0, 10.0, 12.0], [20.0, 10.0, 60.0, 50.0], [4.0, 4.0, 4.0, 9.0],
                 [9.0, 9.0, 3.0, 3.0], [0.0, 0.0, 40.0, 30.0], [-0.7, -0.2, 0.3, 0.9], [12.0, 7.0, 12.5, 7.25],
                 [-300.0, -200.0, 500.0, 400.0], [39.5, 29.5, 45.0, 35.0], [1.0, 2.0, 29.0, 27.0], [10.999, 3.001, 11.001, 28.999]]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("m", [14, 28])
def test_paste_masks_equals_torchvision_paste_masks_in_image(impl, m):
    from torchvision.models.detection.roi_heads import paste_masks_in_image
    g = torch.Generator().manual_seed(m)
    boxes = torch.tensor(AWKWARD_BOXES)
    masks = torch.rand(len(boxes), m, m, generator=g)
    soft = ops.paste_masks(masks, boxes, (30, 40), threshold=-1, impl=impl)
    ref = paste_masks_in_image(masks[:, None], boxes, (30, 40), padding=1)[:, 0]
    torch.testing.assert_close(soft, ref, atol=1e-6, rtol=1e-5)
    hard = ops.paste_masks(masks, boxes, torch.zeros(1, 3, 30, 40), threshold=0.5, impl=impl)
    assert torch.equal(hard, (soft >= 0.5).float())
    assert torch.equal(hard, (ref >= 0.5).float())  # no pixel flips at 0.5 against torchvision
    # A box wholly above-left of the image pastes nothing (torchvision raises there: its slice end goes negative).
    gone = ops.paste_masks(masks[:1], torch.tensor([[-20.0, -20.0, -10.0, -10.0]]), (30, 40), threshold=-1, impl=impl)
    assert gone.abs().max() == 0


@pytest.mark.parametrize("impl", IMPLS)
def test_panoptic_paste_by_hand(impl):
    h, w = 6, 8
    semantic = torch.zeros(h, w, dtype=torch.int64)  # class 0: the thing class; 1 and 2: stuff
    semantic[:, 4:] = 2
    semantic[0, :4] = 1
    masks = torch.zeros(5, h, w)
    masks[0, 1:4, 0:3] = 1  # 0.9, 2nd: 9 px, 4 already taken (4/9 <= 0.5): kept, 5 px
    masks[1, 2:5, 1:4] = 1  # 0.8, 3rd: 9 px, 4 taken: kept, 5 px
    masks[2, 1:3, 0:2] = 1  # 0.95, pasted first: 4 px
    masks[3, 1:3, 0:3] = 1  # 0.7: all 6 px taken: dropped
    masks[4, 5, 0:4] = 1  # 0.3: free pixels but under the score threshold: dropped
    scores = torch.tensor([0.9, 0.8, 0.95, 0.7, 0.3])
    classes = torch.tensor([0, 0, 0, 0, 0])
    ids, table = ops.panoptic_paste(semantic, masks, scores, classes, num_classes=3, num_thing_classes=1,
                                    overlap_threshold=0.5, min_stuff_area=3, score_threshold=0.5, impl=impl)
    assert ids.dtype == torch.int32 and ids[1, 0] == 1 and ids[3, 0] == 2 and ids[4, 1] == 3 and ids[5, 0] == 0
    expected = torch.tensor([[1, 0, 1, 4, 0.95], [2, 0, 1, 5, 0.9], [3, 0, 1, 5, 0.8], [4, 1, 0, 4, 1.0], [5, 2, 0, 24, 1.0],
                             [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    torch.testing.assert_close(table, expected)
    assert [(ids == i).sum().item() for i in range(6)] == [6, 4, 5, 5, 4, 24]
    # A stuff region smaller than min_stuff_area stays void.
    ids2, table2 = ops.panoptic_paste(semantic, masks, scores, classes, 3, 1, 0.5, min_stuff_area=5, impl=impl)
    assert (ids2 == 0).sum() == 10 and table2[3, 1] == 2
    # No instances at all: the stuff alone (the thing class's pixels are void).
    ids3, table3 = ops.panoptic_paste(semantic, masks[:0], scores[:0], classes[:0], 3, 1, 0.5, min_stuff_area=3, impl=impl)
    assert (ids3 == 0).sum() == 20 and table3.tolist() == [[1, 1, 0, 4, 1.0], [2, 2, 0, 24, 1.0]]


def test_panoptic_paste_native_equals_reference_on_random_scenes():
    g = torch.Generator().manual_seed(3)
    for _ in range(5):
        h, w, r = 20, 24, 7
        semantic = torch.randint(0, 5, (h, w), generator=g)
        masks = (torch.rand(r, h, w, generator=g) > 0.6).float()
        scores = torch.rand(r, generator=g)
        scores[1] = scores[2]  # a tie: the lower index goes first
        classes = torch.randint(0, 2, (r,), generator=g)
        args = dict(num_classes=5, num_thing_classes=2, overlap_threshold=0.4, min_stuff_area=10, score_threshold=0.2)
        ids_t, table_t = ops.panoptic_paste(semantic, masks, scores, classes, **args)
        ids_n, table_n = ops.panoptic_paste(semantic, masks, scores, classes, impl="native", **args)
        assert torch.equal(ids_t, ids_n)
        torch.testing.assert_close(table_t, table_n)


def test_paste_masks_native_equals_reference_on_random_boxes():
    """The CPU launcher computes only the pixels a mask can reach: it must lose none of them."""
    g = torch.Generator().manual_seed(5)
    masks = torch.rand(60, 9, 13, generator=g)
    xy = torch.rand(60, 2, generator=g) * 80 - 10
    boxes = torch.cat([xy, xy + torch.rand(60, 2, generator=g) * torch.tensor([50.0, 3.0]) + 0.01], 1)
    soft = ops.paste_masks(masks, boxes, (47, 61), threshold=-1, impl="native")
    torch.testing.assert_close(soft, ops.paste_masks(masks, boxes, (47, 61), threshold=-1), atol=1e-5, rtol=1e-5)


def test_dcnv3_and_paste_masks_gradcheck():
    d = dict(dtype=torch.float64)
    x = torch.randn(1, 5, 6, 4, **d, requires_grad=True)
    offset = (torch.rand(1, 5, 6, 2 * 9 * 2, **d) * 0.8 + 0.1).requires_grad_()  # off the grid points
    mask = torch.rand(1, 5, 6, 2 * 9, **d, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: ops.dcnv3(a, b, c, 3, 1, 1, 1, 2), (x, offset, mask))
    masks = torch.rand(2, 5, 5, **d, requires_grad=True)
    boxes = torch.tensor([[1.3, 2.1, 9.7, 8.2], [0.4, 0.6, 5.5, 11.1]], **d)
    assert torch.autograd.gradcheck(lambda m: ops.paste_masks(m, boxes, (12, 11), threshold=-1), (masks,))


def test_workloads_are_seeded_typed_and_described():
    """edgeseg.ops.workloads (ops_bench's and cuda_variants' inputs): each op has its description, the seed fixes the
    inputs, the floating ones come in the dtype asked, the boxes are proper (x1 < x2, y1 < y2)."""
    from edgeseg.ops.workloads import SHAPES, workloads

    w = workloads("cpu")
    assert list(w) == list(SHAPES)
    assert w["roi_align"]["x"].shape == (1, 256, 200, 272) and w["roi_align"]["rois"].shape == (512, 5)
    assert [tuple(f.shape[-2:]) for f in w["multilevel_roi_align"]["feats"]] == [(200, 272), (100, 136), (50, 68), (25, 34)]
    rois = w["roi_align"]["rois"]
    assert bool((rois[:, 3] > rois[:, 1]).all() and (rois[:, 4] > rois[:, 2]).all())
    again = workloads("cpu")
    assert all(torch.equal(w["deform_conv2d"][k], again["deform_conv2d"][k]) for k in ("x", "w", "offset", "mask", "b"))
    del again
    half = workloads("cpu", torch.float16, seed=1)
    assert half["dcnv3"]["x"].dtype == torch.float16 and half["panoptic_paste"]["semantic"].dtype == torch.int64
    assert not torch.equal(half["dcnv3"]["x"].float(), w["dcnv3"]["x"].half().float())
