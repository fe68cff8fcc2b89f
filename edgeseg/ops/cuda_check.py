"""The CUDA launchers from Python: ctypes bindings of libedgeseg_cuda (raw: ``Launchers``; checked, with the CPU
launcher's signatures: ``run_case``), used by benchmarks/ops_bench.py (``cuda_variants``) and by
scripts/gpu_check.sh (``python -m edgeseg.ops.cuda_check --cuda-lib LIB --out JSON``: ``run_all``). The device run
checks every kernel against the CPU launcher (the hostile cases), torchvision's CUDA ops and the PyTorch references
(FP32, FP16; tolerances from edgeseg.tolerances) and times it against torchvision and its memory-bound estimate;
each check is a record, a failure does not stop the rest. Needs only torch and torchvision (and edgeseg.ops)."""
from __future__ import annotations

import ctypes
import statistics
from typing import Any

import torch
import torchvision

from edgeseg import ops
from edgeseg.tolerances import tolerance

P = ctypes.c_void_p
I = ctypes.c_int
F = ctypes.c_float


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    lib.es_cuda_roi_align.argtypes = [I, P, I, I, I, I, P, P, I, I, I, I, F, I, P, P]
    lib.es_cuda_deform_conv2d.argtypes = [I, P, I, I, I, I, P, I, I, I, P, P, P, I, I, I, I, I, I, I, I, I, I, P, P]
    lib.es_cuda_dcnv3.argtypes = [I, P, I, I, I, I, P, P, I, I, I, I, I, I, I, I, I, F, I, I, P, P]
    lib.es_cuda_paste_masks.argtypes = [I, P, I, I, I, P, I, I, F, P, P]
    lib.es_cuda_panoptic_paste.argtypes = [P, I, I, P, P, P, I, I, I, F, ctypes.c_int64, F, P, P, P, P]
    lib.es_cuda_panoptic_workspace_bytes.argtypes = [I, I, I]
    lib.es_cuda_panoptic_workspace_bytes.restype = ctypes.c_size_t
    return lib


def _stream():
    return P(torch.cuda.current_stream().cuda_stream)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        raise RuntimeError(f"{what}: CUDA launch failed with cudaError_t {rc}")


class Launchers:
    """The CUDA launchers with the ops' Python signatures (contiguous CUDA tensors, float32 or float16)."""

    def __init__(self, lib: ctypes.CDLL):
        self.lib = _bind(lib)

    @staticmethod
    def _dtype(t):
        return 1 if t.dtype == torch.float16 else 0

    def roi_align(self, x, rois5, out, scale, sampling, aligned):
        k = rois5.shape[0]
        boxes = rois5[:, 1:].float().contiguous()  # boxes stay float32 in every precision
        batch = rois5[:, 0].to(torch.int32).contiguous()
        y = x.new_empty(k, x.shape[1], out, out)
        _check(self.lib.es_cuda_roi_align(self._dtype(x), x.data_ptr(), *x.shape, boxes.data_ptr(), batch.data_ptr(), k,
                                          out, out, sampling, scale, int(aligned), y.data_ptr(), _stream()), "roi_align")
        return y

    def deform_conv2d(self, x, offset, w, b, mask):
        n, cin, h, wd = x.shape
        cout, _, kh, kw = w.shape
        ho, wo = offset.shape[2:]
        y = x.new_empty(n, cout, ho, wo)
        _check(self.lib.es_cuda_deform_conv2d(self._dtype(x), x.data_ptr(), n, cin, h, wd, w.data_ptr(), cout, kh, kw,
                                              offset.data_ptr(), mask.data_ptr(), b.data_ptr(), 1, 1, 1, 1, 1, 1, 1, 1,
                                              ho, wo, y.data_ptr(), _stream()), "deform_conv2d")
        return y

    def dcnv3(self, x, offset, mask, group):
        n, h, w, c = x.shape
        y = x.new_empty(n, h, w, c)
        _check(self.lib.es_cuda_dcnv3(self._dtype(x), x.data_ptr(), n, h, w, c, offset.data_ptr(), mask.data_ptr(), 3, 3,
                                      1, 1, 1, 1, 1, 1, group, 1.0, h, w, y.data_ptr(), _stream()), "dcnv3")
        return y

    def paste_masks(self, masks, boxes, image, threshold):
        r, mh, mw = masks.shape
        y = masks.new_empty(r, *image)
        _check(self.lib.es_cuda_paste_masks(self._dtype(masks), masks.data_ptr(), r, mh, mw, boxes.float().contiguous().data_ptr(),
                                            *image, threshold, y.data_ptr(), _stream()), "paste_masks")
        return y

    def panoptic_paste(self, semantic, masks, scores, classes, num_classes, num_thing_classes, min_stuff_area,
                       overlap_threshold=0.5, score_threshold=0.5):
        sem = semantic.to(torch.int32).contiguous()
        cls = classes.to(torch.int32).contiguous()
        h, w = sem.shape
        r = masks.shape[0]
        ids = torch.empty(h, w, dtype=torch.int32, device=sem.device)
        table = torch.empty(r + num_classes - num_thing_classes, 5, device=sem.device)
        scratch = torch.empty(self.lib.es_cuda_panoptic_workspace_bytes(r, num_classes, num_thing_classes), dtype=torch.uint8,
                              device=sem.device)  # the plugin's workspace
        _check(self.lib.es_cuda_panoptic_paste(sem.data_ptr(), h, w, masks.contiguous().data_ptr(), scores.contiguous().data_ptr(),
                                               cls.data_ptr(), r, num_classes, num_thing_classes, overlap_threshold,
                                               min_stuff_area, score_threshold, ids.data_ptr(), table.data_ptr(),
                                               scratch.data_ptr(), _stream()), "panoptic_paste")
        return ids, table


def check_panoptic(lib: ctypes.CDLL) -> list[str]:
    """The many-block panoptic launcher against the CPU launcher (libedgeseg_cpu, the same math core), identical ids
    and segment tables, on the cases its design turns on: an image over many blocks, more instances than the old
    single-block kernel took (4,096), overlaps (the accept rule), ties and NaN scores (the order), stuff classes past
    the shared-memory histogram (4,096 bins), an empty instance list, a 1×1 image. Raises on any difference."""
    cu = Launchers(lib)
    g = torch.Generator().manual_seed(0)
    cases = [  # (name, h, w, r, num_classes, num_thing_classes, min_stuff_area)
        ("1024x1024, 100 instances, 53 stuff classes", 1024, 1024, 100, 133, 80, 64),
        ("5000 instances (above the old 4,096 limit)", 64, 96, 5000, 133, 80, 0),
        ("6000 stuff classes (past the 4,096 shared bins)", 300, 200, 20, 6010, 10, 1),
        ("no instances", 257, 129, 0, 20, 5, 10),
        ("1x1 image", 1, 1, 3, 4, 2, 0),
    ]
    notes = []
    for name, h, w, r, nc, nt, min_area in cases:
        semantic = torch.randint(0, nc, (h, w), generator=g, dtype=torch.int32)
        masks = (torch.rand(r, h, w, generator=g) > 0.9).float() * torch.rand(r, 1, 1, generator=g).mul(2)
        scores = torch.rand(r, generator=g).round(decimals=1)  # ties
        scores[::7] = float("nan")
        classes = torch.randint(0, max(nt, 1), (r,), generator=g, dtype=torch.int32)
        ids_ref, table_ref = ops.panoptic_paste(semantic, masks, scores, classes, nc, nt, 0.5, min_area, 0.3, impl="native")
        ids, table = cu.panoptic_paste(semantic.cuda(), masks.cuda(), scores.cuda(), classes.cuda(), nc, nt, min_area, 0.5, 0.3)
        torch.cuda.synchronize()
        if not (torch.equal(ids.cpu(), ids_ref) and torch.equal(table.cpu(), table_ref)):
            bad = (ids.cpu() != ids_ref).sum().item()
            raise AssertionError(f"panoptic_paste ({name}): the CUDA launcher disagrees with the CPU launcher "
                                 f"({bad} ids differ)")
        notes.append(f"panoptic_paste {name}: identical to the CPU launcher ({int(table_ref[:, 0].gt(0).sum())} segments)")
    return notes


def _agree(name: str, got: torch.Tensor, ref: torch.Tensor, precision: str, notes: list[str]) -> None:
    tol = tolerance(precision)
    err = (got.float() - ref.float()).abs().max().item() if ref.numel() else 0.0
    if tol.atol is None:  # FP16 logits are reported, not bounded (edgeseg.tolerances)
        notes.append(f"{name} {precision}: max abs error {err:.3g} against the FP32 reference (not bounded).")
        return
    bound = tol.atol + tol.rtol * ref.float().abs().max().item() if ref.numel() else 0.0
    notes.append(f"{name} {precision}: max abs error {err:.3g} against the FP32 reference (bound {bound:.3g}).")
    if not err <= bound:
        raise AssertionError(f"{name} {precision}: max abs error {err:.3g} exceeds {bound:.3g}")


def device_rates() -> tuple[float, float]:
    """Measured copy bandwidth (bytes/s, read + write) and FP32 FMA-pipe rate (FLOP/s, TF32 off)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    a = torch.empty(256 * 1024 * 1024, dtype=torch.float32, device="cuda")
    m = torch.randn(8192, 8192, device="cuda")
    for _ in range(2):
        a.clone()
        m @ m
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        a.clone()
    end.record()
    torch.cuda.synchronize()
    bandwidth = 10 * 2 * a.numel() * 4 / (start.elapsed_time(end) / 1000)
    start.record()
    for _ in range(5):
        m @ m
    end.record()
    torch.cuda.synchronize()
    flops = 5 * 2 * 8192 ** 3 / (start.elapsed_time(end) / 1000)
    return bandwidth, flops


def cuda_variants(lib: ctypes.CDLL, workloads) -> tuple[dict, dict]:
    cu = Launchers(lib)
    w32, w16 = workloads("cuda", torch.float32), workloads("cuda", torch.float16)
    notes: dict[str, list[str]] = {op: [] for op in w32}
    r32, r16 = w32["roi_align"], w16["roi_align"]
    d32, d16 = w32["deform_conv2d"], w16["deform_conv2d"]
    v32, v16 = w32["dcnv3"], w16["dcnv3"]
    p32, p16 = w32["paste_masks"], w16["paste_masks"]
    q = w32["panoptic_paste"]

    with torch.no_grad():
        ref = torchvision.ops.roi_align(r32["x"], r32["rois"], 7, r32["scale"], 2, True)
        _agree("roi_align", cu.roi_align(r32["x"], r32["rois"], 7, r32["scale"], 2, True), ref, "fp32", notes["roi_align"])
        _agree("roi_align", cu.roi_align(r16["x"], r16["rois"], 7, r16["scale"], 2, True), ref, "fp16", notes["roi_align"])
        ref = torchvision.ops.deform_conv2d(d32["x"], d32["offset"], d32["w"], d32["b"], 1, 1, 1, d32["mask"])
        _agree("deform_conv2d", cu.deform_conv2d(d32["x"], d32["offset"], d32["w"], d32["b"], d32["mask"]), ref, "fp32", notes["deform_conv2d"])
        _agree("deform_conv2d", cu.deform_conv2d(d16["x"], d16["offset"], d16["w"], d16["b"], d16["mask"]), ref, "fp16", notes["deform_conv2d"])
        ref = ops.dcnv3(v32["x"], v32["offset"], v32["mask"], 3, 1, 1, 1, 8)
        _agree("dcnv3", cu.dcnv3(v32["x"], v32["offset"], v32["mask"], 8), ref, "fp32", notes["dcnv3"])
        _agree("dcnv3", cu.dcnv3(v16["x"], v16["offset"], v16["mask"], 8), ref, "fp16", notes["dcnv3"])
        ref = ops.paste_masks(p32["masks"], p32["boxes"], p32["image"], threshold=-1)
        _agree("paste_masks", cu.paste_masks(p32["masks"], p32["boxes"], p32["image"], -1.0), ref, "fp32", notes["paste_masks"])
        _agree("paste_masks", cu.paste_masks(p16["masks"], p16["boxes"], p16["image"], -1.0), ref, "fp16", notes["paste_masks"])
        ids_ref, table_ref = ops.panoptic_paste(q["semantic"].cpu(), q["masks"].cpu(), q["scores"].cpu(), q["classes"].cpu(),
                                                133, 80, min_stuff_area=64, impl="native")
        ids, table = cu.panoptic_paste(q["semantic"], q["masks"], q["scores"], q["classes"], 133, 80, 64)
        if not (torch.equal(ids.cpu(), ids_ref) and torch.allclose(table.cpu(), table_ref)):
            raise AssertionError("panoptic_paste: the CUDA launcher disagrees with the CPU launcher")
        notes["panoptic_paste"].append("panoptic_paste: ids and segment table identical to the CPU launcher.")

    bandwidth, flops = device_rates()
    x, wt = d32["x"], d32["w"]
    dcn_flops = 2 * wt.shape[0] * wt[0].numel() * d32["offset"].shape[2] * d32["offset"].shape[3]
    dcn_bytes = 4 * sum(t.numel() for t in (x, wt, d32["offset"], d32["mask"], d32["b"])) + 4 * x.numel()
    notes["deform_conv2d"].append(
        f"Roofline: {dcn_flops / 1e9:.2f} GFLOP and {dcn_bytes / 1e6:.1f} MB at least; measured {flops / 1e12:.1f} TFLOP/s "
        f"(FP32 GEMM, TF32 off) and {bandwidth / 1e9:.0f} GB/s (copy) give a floor of "
        f"{max(dcn_flops / flops, dcn_bytes / bandwidth) * 1e3:.3f} ms (compute-bound).")
    k, c = r32["rois"].shape[0], r32["x"].shape[1]
    roi_bytes = 4 * k * c * 49 * (1 + 4 * 4)  # output + 4 samples × 4 taps per bin (sampling 2), no cache reuse
    notes["roi_align"].append(
        f"Roofline: {roi_bytes / 1e6:.0f} MB if no tap is reused from cache (the output alone is {4 * k * c * 49 / 1e6:.0f} MB) "
        f"at {bandwidth / 1e9:.0f} GB/s: floor {4 * k * c * 49 / bandwidth * 1e3:.3f}–{roi_bytes / bandwidth * 1e3:.3f} ms.")

    variants = {
        "roi_align": {
            "torchvision CUDA fp32": lambda: torchvision.ops.roi_align(r32["x"], r32["rois"], 7, r32["scale"], 2, True),
            "edgeseg CUDA fp32": lambda: cu.roi_align(r32["x"], r32["rois"], 7, r32["scale"], 2, True),
            "edgeseg CUDA fp16": lambda: cu.roi_align(r16["x"], r16["rois"], 7, r16["scale"], 2, True)},
        "deform_conv2d": {
            "torchvision CUDA fp32": lambda: torchvision.ops.deform_conv2d(d32["x"], d32["offset"], d32["w"], d32["b"], 1, 1, 1, d32["mask"]),
            "edgeseg CUDA fp32": lambda: cu.deform_conv2d(d32["x"], d32["offset"], d32["w"], d32["b"], d32["mask"]),
            "edgeseg CUDA fp16": lambda: cu.deform_conv2d(d16["x"], d16["offset"], d16["w"], d16["b"], d16["mask"])},
        "dcnv3": {
            "edgeseg torch reference CUDA fp32": lambda: ops.dcnv3(v32["x"], v32["offset"], v32["mask"], 3, 1, 1, 1, 8),
            "edgeseg CUDA fp32": lambda: cu.dcnv3(v32["x"], v32["offset"], v32["mask"], 8),
            "edgeseg CUDA fp16": lambda: cu.dcnv3(v16["x"], v16["offset"], v16["mask"], 8)},
        "paste_masks": {
            "edgeseg torch reference CUDA fp32": lambda: ops.paste_masks(p32["masks"], p32["boxes"], p32["image"]),
            "edgeseg CUDA fp32": lambda: cu.paste_masks(p32["masks"], p32["boxes"], p32["image"], 0.5),
            "edgeseg CUDA fp16": lambda: cu.paste_masks(p16["masks"], p16["boxes"], p16["image"], 0.5)},
        "panoptic_paste": {
            "edgeseg torch reference CUDA": lambda: ops.panoptic_paste(q["semantic"], q["masks"], q["scores"], q["classes"], 133, 80, min_stuff_area=64),
            "edgeseg CUDA": lambda: cu.panoptic_paste(q["semantic"], q["masks"], q["scores"], q["classes"], 133, 80, 64)},
    }
    return variants, notes


# --- scripts/gpu_check.sh: every kernel against the CPU launcher, torchvision and its memory-bound time ------------
# The CPU launcher (libedgeseg_cpu's es_* ABI) and the checked CUDA entry points (plugins/cuda/capi_checked.cu,
# es_cuda_checked_*) take the same arguments, so one list of cases drives both: a case is refused by both with
# the same message, or answered by both with the same numbers. Runs on the CPU alone (backend "cpu") too.

NAN, INF = float("nan"), float("inf")
_INT32_MIN = -(2 ** 31)


def _es_tensor(t) -> Any:
    """An es_tensor over ``t``'s memory (a torch tensor, CPU or CUDA), or a data-less one for a shape tuple: a
    hostile size that validation must refuse before it reads anything (None: an absent optional input)."""
    from edgeseg.ops.native import _MAX_RANK, _Tensor  # the CPU launcher's es_tensor layout (ops/native.py)

    if t is None:
        return None
    dims = tuple(t) if isinstance(t, tuple) else tuple(t.shape)
    data = t.data_ptr() if not isinstance(t, tuple) and t.numel() else None
    return _Tensor(data, len(dims), (ctypes.c_int64 * _MAX_RANK)(*dims))


# name -> (op, inputs, attributes, expectation). Inputs: torch tensors (moved to the backend's device), shape tuples
# (no data: must be refused) or None (absent). Attributes are ctypes values in the C ABI's order. Expectation:
# "refused:<text>" (the message must contain it), "zeros:<slice start>" (rows from there on are all zero), or
# "ran". The shapes are those of tests/test_native_hostile.py.
def hostile_cases(seed: int = 0) -> dict[str, tuple]:
    g = torch.Generator().manual_seed(seed)
    rn = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    c_i, c_f = ctypes.c_int, ctypes.c_float

    def roi(out=(4, 4), scale=1.0, sampling=2, aligned=1):
        return (c_i(out[0]), c_i(out[1]), c_f(scale), c_i(sampling), c_i(aligned))

    def conv(groups=1, offset_groups=1, pad=0):
        return (c_i(1), c_i(1), c_i(pad), c_i(pad), c_i(1), c_i(1), c_i(groups), c_i(offset_groups))

    def v3(group=2, pad=1):
        return (c_i(3), c_i(3), c_i(1), c_i(1), c_i(pad), c_i(pad), c_i(1), c_i(1), c_i(group), c_f(1.0))

    x = rn(2, 3, 16, 16)
    bad_boxes = torch.tensor([[1, 1, 9, 9], [NAN, 1, 9, 9], [1, 1, INF, 9], [-INF, 1, 9, 9], [1, 1, 9, 9], [1, 1, 9, 9],
                              [1, 1, 9, 9], [1e30, 1e30, 3e38, 3e38]], dtype=torch.float32)
    bad_batch = torch.tensor([0, 0, 1, 0, -1, 2, _INT32_MIN, 1], dtype=torch.int32)  # -1, 2 (N = 2), a NaN index
    dx, dw, doff = rn(1, 4, 8, 8), rn(6, 4, 3, 3), rn(1, 18, 6, 6)
    vx, voff, vmask = rn(1, 8, 8, 4), rn(1, 8, 8, 36), torch.rand(1, 8, 8, 18, generator=g)
    masks = torch.rand(5, 7, 7, generator=g)
    paste_boxes = torch.tensor([[2.0, 2, 12, 12], [NAN, 2, 12, 12], [2, 2, INF, 12], [-INF, -INF, INF, INF],
                                [-3e38, 0, 3e38, 10]])
    one_box, one_batch = torch.tensor([[1.0, 1, 5, 5]]), torch.zeros(1, dtype=torch.int32)
    sem = torch.randint(0, 7, (24, 32), generator=g, dtype=torch.int32)
    full = (torch.rand(6, 24, 32, generator=g) > 0.6).float()
    roi_masks = torch.rand(6, 14, 14, generator=g)
    pboxes = torch.tensor([[0.0, 0, 16, 12], [4, 4, 30, 22], [10, 2, 31, 23], [NAN, 1, 9, 9], [2, 8, 12, 20], [-5, -5, 40, 40]])
    pscores = torch.tensor([0.9, 0.9, NAN, 0.8, 0.7, 0.2])
    pclasses = torch.tensor([0, 1, 2, 0, 1, 2], dtype=torch.int32)

    def pan(nc=7, nt=3, overlap=0.5, min_area=4, score=0.3):
        return (c_i(nc), c_i(nt), c_f(overlap), ctypes.c_int64(min_area), c_f(score))
    big = 1 << 20
    return {
        # RoIAlign
        "roi_align NaN/inf boxes, batch index out of range": ("roi_align", (x, bad_boxes, bad_batch), roi(), "zeros:1"),
        "roi_align giant boxes (sample count capped)": ("roi_align", (rn(1, 2, 32, 32), torch.tensor(
            [[-229376.0, 0, 229376, 30], [0, -5e5, 31, 5e5], [0.5, 0.5, 20.5, 30.5]]), torch.zeros(3, dtype=torch.int32)),
            roi((7, 7), 1.0, -1, 0), "ran"),
        "roi_align no boxes": ("roi_align", (x, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int32)), roi(), "ran"),
        "roi_align empty batch with boxes": ("roi_align", (torch.zeros(0, 3, 8, 8), one_box, one_batch), roi((2, 2)), "zeros:0"),
        "roi_align sampling_ratio 65536": ("roi_align", (x, one_box, one_batch), roi(sampling=65536), "refused:sampling_ratio"),
        "roi_align spatial_scale NaN": ("roi_align", (x, one_box, one_batch), roi(scale=NAN), "refused:spatial_scale"),
        "roi_align spatial_scale inf": ("roi_align", (x, one_box, one_batch), roi(scale=INF), "refused:spatial_scale"),
        "roi_align output 0x7": ("roi_align", (x, one_box, one_batch), roi(out=(0, 7)), "refused:output"),
        "roi_align rois Kx5": ("roi_align", (x, torch.zeros(3, 5), torch.zeros(3, dtype=torch.int32)), roi(), "refused:rois"),
        "roi_align huge input (2^62 elements)": ("roi_align", ((1, big, big, big), one_box, one_batch), roi(), "refused:X"),
        "roi_align huge output (2^40 elements)": ("roi_align", ((1, big, 8, 8), (big, 4), (big,)), roi((1024, 1024)),
                                                  "refused:"),
        # DCNv2
        "deform_conv2d modulated with bias": ("deform_conv2d", (dx, dw, doff, rn(6), torch.rand(1, 9, 6, 6, generator=g)),
                                              conv(), "ran"),
        "deform_conv2d no mask, no bias": ("deform_conv2d", (dx, dw, doff, None, None), conv(), "ran"),
        "deform_conv2d NaN/inf offsets": ("deform_conv2d", (dx, dw, torch.where(torch.rand(1, 18, 6, 6, generator=g) > 0.7,
                                          torch.tensor(NAN), doff).index_fill_(1, torch.tensor([3]), INF), None, None),
                                          conv(), "ran"),
        "deform_conv2d offset of the input's size": ("deform_conv2d", (dx, dw, rn(1, 18, 8, 8), None, None), conv(),
                                                     "refused:offset"),
        "deform_conv2d mask of another size": ("deform_conv2d", (dx, dw, doff, None, torch.rand(1, 9, 5, 5)), conv(),
                                               "refused:mask"),
        "deform_conv2d bias for 5 of 6 channels": ("deform_conv2d", (dx, dw, doff, rn(5), None), conv(), "refused:bias"),
        "deform_conv2d huge input": ("deform_conv2d", ((1, 4, big, big * 64), dw, (1, 18, big, big * 64), None, None),
                                     conv(), "refused:"),
        # DCNv3
        "dcnv3 channels-last": ("dcnv3", (vx, voff, vmask), v3(), "ran"),
        "dcnv3 offset of another size": ("dcnv3", (vx, voff[:, :6].contiguous(), vmask), v3(), "refused:offset"),
        "dcnv3 mask of another size": ("dcnv3", (vx, voff, vmask[..., :9].contiguous()), v3(), "refused:mask"),
        "dcnv3 group 3 of 4 channels": ("dcnv3", (vx, voff, vmask), v3(group=3), "refused:group"),
        "dcnv3 huge input": ("dcnv3", ((1, big, big, 4), (1, big, big, 36), (1, big, big, 18)), v3(), "refused:"),
        # paste
        "paste_masks non-finite boxes": ("paste_masks", (masks, paste_boxes, (16, 16)), (c_f(-1.0),), "zeros:1:4"),
        "paste_masks one box per mask": ("paste_masks", (torch.rand(3, 14, 14), torch.tensor([[1.0, 1, 9, 9]] * 2), (16, 16)),
                                         (c_f(0.5),), "refused:boxes"),
        "paste_masks image 2^31 high": ("paste_masks", (masks, paste_boxes, (1 << 31, 16)), (c_f(0.5),), "refused:image"),
        # panoptic (paste: full-image masks; merge: RoI masks + boxes, or boxes + labels). Ties, NaN scores, a NaN box.
        "panoptic_paste overlaps, ties, NaN scores": ("panoptic_paste", (sem, full, pscores, pclasses), pan(), "ran"),
        "panoptic_paste fewer scores than masks": ("panoptic_paste", (sem, full, pscores[:3], pclasses), pan(),
                                                   "refused:scores"),
        "panoptic_paste num_thing_classes above num_classes": ("panoptic_paste", (sem, full, pscores, pclasses),
                                                               pan(nt=9), "refused:num_thing_classes"),
        "panoptic_paste huge semantic map": ("panoptic_paste", ((big, big), (6, big, big), (6,), (6,)), pan(), "refused:"),
        "panoptic_merge RoI masks in boxes": ("panoptic_merge", (sem, roi_masks, pboxes, pscores, pclasses),
                                              (c_i(0),) + pan(), "ran"),
        "panoptic_merge boxes and labels": ("panoptic_merge", (sem, torch.zeros(6, 0, 0), pboxes, pscores, pclasses),
                                            (c_i(1),) + pan(), "ran"),
        "panoptic_merge mask_rule 2": ("panoptic_merge", (sem, roi_masks, pboxes, pscores, pclasses), (c_i(2),) + pan(),
                                       "refused:mask_rule"),
        "panoptic_merge boxes for 5 of 6 masks": ("panoptic_merge", (sem, roi_masks, pboxes[:5], pscores, pclasses),
                                                  (c_i(0),) + pan(), "refused:boxes"),
        "panoptic_merge huge RoI masks": ("panoptic_merge", (sem, (6, big, big), pboxes, pscores, pclasses),
                                          (c_i(0),) + pan(), "refused:masks"),
    }


def _cpu_lib() -> ctypes.CDLL:
    from edgeseg.ops.native import _lib  # libedgeseg_cpu.so, as impl="native" loads it

    return _lib()


def bind_checked(lib: ctypes.CDLL) -> ctypes.CDLL:
    lib.es_cuda_last_error.restype = ctypes.c_char_p
    return lib


OUTPUTS = {"panoptic_paste": (torch.int32, torch.float32), "panoptic_merge": (torch.int32, torch.float32)}


def run_case(case: tuple, backend: str, lib: ctypes.CDLL | None = None, device: str = "cpu"):
    """One case through one launcher: ("refused", message) or ("ran", its outputs on the CPU). ``backend``
    "cpu": libedgeseg_cpu's es_<op>; "cuda": ``lib``'s es_cuda_checked_<op> on ``device``'s memory."""
    op, inputs, attrs, _ = case
    on = [t.to(device).contiguous() if isinstance(t, torch.Tensor) else t for t in inputs]
    args = [_es_tensor(t) for t in on]
    if backend == "cpu":
        lib = _cpu_lib()
        fn, tail, error = getattr(lib, f"es_{op}"), [], lib.es_last_error
    else:
        if lib is None:
            raise ValueError("the cuda backend needs libedgeseg_cuda (lib)")
        lib = bind_checked(lib)
        stream = torch.cuda.current_stream().cuda_stream if device != "cpu" else None
        fn, tail, error = getattr(lib, f"es_cuda_checked_{op}"), [P(stream)], lib.es_cuda_last_error
    refs = [ctypes.byref(a) if a is not None else None for a in args]
    dtypes = OUTPUTS.get(op, (torch.float32,))
    queries = [_es_tensor((0,)) for _ in dtypes]
    if fn(*refs, *attrs, *[ctypes.byref(q) for q in queries], *tail) != 0:
        return "refused", error().decode()
    outs = [torch.zeros(tuple(q.dims[: q.rank]), dtype=dt, device=device) for q, dt in zip(queries, dtypes)]
    views = [_es_tensor(o) for o in outs]
    rc = fn(*refs, *attrs, *[ctypes.byref(v) for v in views], *tail)
    if rc == -1:
        return "refused", error().decode()
    if rc != 0:
        raise RuntimeError(f"{op}: CUDA launch failed with cudaError_t {rc}")
    if device != "cpu":
        torch.cuda.synchronize()
    return "ran", [o.cpu() for o in outs]


def expectation_met(expect: str, outcome: tuple) -> str | None:
    """None when ``outcome`` is what the case expects, else why not."""
    kind, value = outcome
    want = expect.split(":")
    if want[0] == "refused":
        return None if kind == "refused" and want[1] in value else f"expected a refusal naming '{want[1]}', got {kind}: " \
            f"{value if kind == 'refused' else [tuple(v.shape) for v in value]}"
    if kind == "refused":
        return f"expected an answer, refused: {value}"
    if not all(torch.isfinite(v).all() for v in value if v.is_floating_point()):
        return "non-finite values in the output"
    if want[0] == "zeros":
        rows = value[0][int(want[1]): int(want[2]) if len(want) > 2 else None]
        if rows.numel() and rows.abs().max() != 0:
            return f"rows {want[1]}: must be zeros"
    return None


def same_outcome(a: tuple, b: tuple, atol: float, rtol: float = 0.0) -> str | None:
    """None when two launchers answered alike: both refused with the same message, or both ran to outputs of one
    shape and dtype, integers identical, floats within ``atol + rtol * max|a's output|``."""
    if a[0] != b[0]:
        return f"one refused, one ran: {a[1] if a[0] == 'refused' else b[1]}"
    if a[0] == "refused":
        return None if a[1] == b[1] else f"different refusals: {a[1]!r} vs {b[1]!r}"
    for x, y in zip(a[1], b[1]):
        if x.shape != y.shape or x.dtype != y.dtype:
            return f"outputs {tuple(x.shape)} {x.dtype} vs {tuple(y.shape)} {y.dtype}"
        if not x.is_floating_point() and not torch.equal(x, y):  # ids: identical
            return f"{int((x != y).sum())} of {x.numel()} integer values differ"
        err = (x.float() - y.float()).abs().max().item() if x.numel() else 0.0
        bound = atol + rtol * (x.float().abs().max().item() if x.numel() else 0.0)
        if not err <= bound:
            return f"max abs difference {err:.3g} above {bound:.3g}"
    return None


def check_hostile(cuda_lib: ctypes.CDLL | None, device: str = "cuda", only_refusals: bool = False) -> list[dict]:
    """Every hostile case through the CPU launcher (its expectation) and, with ``cuda_lib``, through the checked CUDA
    entry points (the same outcome as the CPU). ``only_refusals``: CUDA only where the CPU refused (no launch
    happens there, so it runs without a device). One record per case; a failure is recorded, never raised."""
    tol = tolerance("fp32")
    records = []
    for name, case in hostile_cases().items():
        rec = {"kernel": case[0], "case": name, "expect": case[3]}
        try:
            cpu = run_case(case, "cpu")
            rec["cpu"] = cpu[1] if cpu[0] == "refused" else f"ran {[tuple(v.shape) for v in cpu[1]]}"
            problem = expectation_met(case[3], cpu)
            if problem is None and cuda_lib is not None and not (only_refusals and cpu[0] != "refused"):
                cu = run_case(case, "cuda", cuda_lib, device)
                rec["cuda"] = cu[1] if cu[0] == "refused" else f"ran {[tuple(v.shape) for v in cu[1]]}"
                problem = same_outcome(cpu, cu, tol.atol, tol.rtol)
                problem = problem and f"CUDA vs CPU: {problem}"
            else:
                problem = problem and f"CPU launcher: {problem}"
            rec["status"], rec["detail"] = ("ok", "") if problem is None else ("failed", problem)
        except Exception as e:  # noqa: BLE001 (recorded: the check goes on)
            rec["status"], rec["detail"] = "failed", f"{type(e).__name__}: {e}"
        records.append(rec)
    return records


# --- memory-bound estimates ------------------------------------------------------------------------------------

def peak_bandwidth(memory_clock_khz: float, bus_width_bits: float) -> float:
    """Bytes/s from the device properties: the memory clock (kHz, as CUDA reports it) moves data on both edges
    (DDR: GDDR's and HBM's reported clocks both count this way) over the bus."""
    return memory_clock_khz * 1e3 * 2 * bus_width_bits / 8


def memory_bound_ms(bytes_moved: float, bandwidth: float) -> float:
    """The time to read and write ``bytes_moved`` once at ``bandwidth`` bytes/s: no kernel that moves them is faster."""
    return bytes_moved / bandwidth * 1e3


def traffic_bytes(op: str, w: dict, itemsize: int = 4) -> int:
    """Bytes a kernel must read and write at least once for the ops_bench workload ``w``: every input and output,
    except RoIAlign's feature map (only the sampled taps are read, data-dependent: its floor is outputs + boxes)."""
    n = lambda *ts: sum(t.numel() for t in ts if t is not None)  # noqa: E731
    if op == "roi_align":
        k, c = w["rois"].shape[0], w["x"].shape[1]
        return itemsize * k * c * w["out"] ** 2 + 4 * 5 * k
    if op == "deform_conv2d":
        out = w["x"].shape[0] * w["w"].shape[0] * w["offset"].shape[2] * w["offset"].shape[3]
        return itemsize * (n(w["x"], w["w"], w["offset"], w["mask"], w["b"]) + out)
    if op == "dcnv3":
        return itemsize * (n(w["x"], w["offset"], w["mask"]) + w["x"].numel())
    if op == "paste_masks":
        return itemsize * (n(w["masks"]) + w["masks"].shape[0] * w["image"][0] * w["image"][1]) + 16 * w["masks"].shape[0]
    if op == "panoptic_paste":
        h, wd = w["semantic"].shape
        return 4 * (2 * h * wd + n(w["masks"], w["scores"], w["classes"]))
    raise KeyError(op)


def device_bandwidth() -> dict:
    """Peak bandwidth from the device properties (where torch reports the memory clock and bus) and a measured
    device-to-device copy (read + write); the estimates use the peak, else the copy."""
    props = torch.cuda.get_device_properties(0)
    clock, bus = getattr(props, "memory_clock_rate", 0), getattr(props, "memory_bus_width", 0)
    copy, _ = device_rates()
    peak = peak_bandwidth(clock, bus) if clock and bus else None
    return {"memory_clock_khz": clock, "bus_width_bits": bus, "peak_bytes_per_s": peak, "copy_bytes_per_s": copy,
            "used": "peak (device properties)" if peak else "measured copy"}


def cuda_times(fns: dict, warmup: int, repeats: int) -> dict[str, list[float]]:
    """Milliseconds per call on the device (CUDA events around each call, round-robin after warm-up, so neighbours
    and clocks affect all alike). Events, not host clocks: the kernels take microseconds, a host-side sync as much."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    torch.cuda.synchronize()
    pairs: dict[str, list] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            pairs[k].append((start, end))
    torch.cuda.synchronize()
    return {k: [a.elapsed_time(b) for a, b in v] for k, v in pairs.items()}


def kernel_workloads(device: str, dtype=torch.float32, seed: int = 0) -> dict:
    """The ops at the shapes of ``edgeseg.ops.workloads`` (ops_bench's inputs), without the multilevel RoIAlign:
    its P3-P5 are not drawn, so every input after P2 differs from that function's. gpu_check's inputs, as it has
    always drawn them."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(device=device, dtype=dtype)

    image = (800, 1088)
    xy = torch.rand(512, 2, generator=g) * torch.tensor([1000.0, 700.0])
    boxes = torch.cat([torch.zeros(512, 1), xy, xy + torch.rand(512, 2, generator=g) * 300 + 8], 1).to(device=device, dtype=dtype)
    h, w = 400, 544
    return {
        "roi_align": dict(x=rand(1, 256, image[0] // 4, image[1] // 4), rois=boxes, out=7, scale=0.25),  # P2, 512 boxes
        "deform_conv2d": dict(x=rand(1, 256, 64, 64), w=rand(256, 256, 3, 3, scale=0.02), offset=rand(1, 18, 64, 64, scale=2.0),
                              mask=torch.rand(1, 9, 64, 64, generator=g).to(device=device, dtype=dtype), b=rand(256)),
        "dcnv3": dict(x=rand(1, 56, 56, 128), offset=rand(1, 56, 56, 8 * 9 * 2, scale=2.0),
                      mask=torch.softmax(torch.randn(1, 56, 56, 8, 9, generator=g), -1).reshape(1, 56, 56, 72).to(device=device, dtype=dtype)),
        "paste_masks": dict(masks=torch.rand(100, 28, 28, generator=g).to(device=device, dtype=dtype), boxes=boxes[:100, 1:], image=image),
        "panoptic_paste": dict(semantic=torch.randint(0, 53, (h, w), generator=g).to(device),
                               masks=(torch.rand(50, h, w, generator=g) > 0.97).float().to(device),
                               scores=torch.rand(50, generator=g).to(device), classes=torch.randint(0, 80, (50,), generator=g).to(device)),
    }


def time_kernels(cuda_lib: ctypes.CDLL, workloads, warmup: int = 5, repeats: int = 30) -> dict:
    """Each kernel (FP32, the ops_bench shapes) beside torchvision's CUDA op (or the PyTorch reference where
    torchvision has none), with its memory-bound estimate. One record per kernel; failures are recorded."""
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    cu = Launchers(cuda_lib)
    w = workloads("cuda", torch.float32)
    bw = device_bandwidth()
    rate = bw["peak_bytes_per_s"] or bw["copy_bytes_per_s"]
    r, d, v, p, q = (w[k] for k in ("roi_align", "deform_conv2d", "dcnv3", "paste_masks", "panoptic_paste"))
    pairs = {
        "roi_align": ("torchvision.ops.roi_align", lambda: torchvision.ops.roi_align(r["x"], r["rois"], 7, r["scale"], 2, True),
                      lambda: cu.roi_align(r["x"], r["rois"], 7, r["scale"], 2, True)),
        "deform_conv2d": ("torchvision.ops.deform_conv2d",
                          lambda: torchvision.ops.deform_conv2d(d["x"], d["offset"], d["w"], d["b"], 1, 1, 1, d["mask"]),
                          lambda: cu.deform_conv2d(d["x"], d["offset"], d["w"], d["b"], d["mask"])),
        "dcnv3": ("edgeseg PyTorch reference", lambda: ops.dcnv3(v["x"], v["offset"], v["mask"], 3, 1, 1, 1, 8),
                  lambda: cu.dcnv3(v["x"], v["offset"], v["mask"], 8)),
        "paste_masks": ("torchvision paste_masks_in_image",
                        lambda: paste_masks_in_image(p["masks"][:, None], p["boxes"], p["image"]),
                        lambda: cu.paste_masks(p["masks"], p["boxes"], p["image"], 0.5)),
        "panoptic_paste": ("edgeseg PyTorch reference",
                           lambda: ops.panoptic_paste(q["semantic"], q["masks"], q["scores"], q["classes"], 133, 80, min_stuff_area=64),
                           lambda: cu.panoptic_paste(q["semantic"], q["masks"], q["scores"], q["classes"], 133, 80, 64)),
    }
    records = []
    for op, (ref_name, ref, ours) in pairs.items():
        rec: dict[str, Any] = {"kernel": op, "baseline": ref_name, "bytes": traffic_bytes(op, w[op])}
        try:
            with torch.no_grad():
                t = cuda_times({"baseline": ref, "edgeseg": ours}, warmup, repeats)
            ms = {k: statistics.median(v) for k, v in t.items()}
            rec.update(baseline_ms=ms["baseline"], edgeseg_ms=ms["edgeseg"], speedup=ms["baseline"] / ms["edgeseg"],
                       memory_bound_ms=memory_bound_ms(rec["bytes"], rate),
                       of_memory_bound=memory_bound_ms(rec["bytes"], rate) / ms["edgeseg"], status="ok")
        except Exception as e:  # noqa: BLE001
            rec.update(status="failed", detail=f"{type(e).__name__}: {e}")
        records.append(rec)
    return {"bandwidth": bw, "kernels": records}


def check_references(cuda_lib: ctypes.CDLL, workloads) -> list[dict]:
    """The CUDA launchers at the ops_bench shapes against torchvision's CUDA ops (RoIAlign, DCNv2) and the PyTorch
    references (DCNv3, paste), FP32 and FP16, against the FP32 reference; each comparison one record."""
    cu = Launchers(cuda_lib)
    w = {"fp32": workloads("cuda", torch.float32), "fp16": workloads("cuda", torch.float16)}
    r, d, v, p = (w["fp32"][k] for k in ("roi_align", "deform_conv2d", "dcnv3", "paste_masks"))
    refs = {  # kernel -> (reference name, reference output, launcher call on a workload)
        "roi_align": ("torchvision.ops.roi_align", lambda: torchvision.ops.roi_align(r["x"], r["rois"], 7, r["scale"], 2, True),
                      lambda a: cu.roi_align(a["x"], a["rois"], 7, a["scale"], 2, True)),
        "deform_conv2d": ("torchvision.ops.deform_conv2d",
                          lambda: torchvision.ops.deform_conv2d(d["x"], d["offset"], d["w"], d["b"], 1, 1, 1, d["mask"]),
                          lambda a: cu.deform_conv2d(a["x"], a["offset"], a["w"], a["b"], a["mask"])),
        "dcnv3": ("edgeseg.ops.dcnv3 (PyTorch)", lambda: ops.dcnv3(v["x"], v["offset"], v["mask"], 3, 1, 1, 1, 8),
                  lambda a: cu.dcnv3(a["x"], a["offset"], a["mask"], 8)),
        "paste_masks": ("edgeseg.ops.paste_masks (PyTorch)", lambda: ops.paste_masks(p["masks"], p["boxes"], p["image"], threshold=-1),
                        lambda a: cu.paste_masks(a["masks"], a["boxes"], a["image"], -1.0)),
    }
    records = []
    for op, (ref_name, ref_fn, ours) in refs.items():
        for precision in ("fp32", "fp16"):
            rec = {"kernel": op, "case": f"{precision} against {ref_name}"}
            try:
                with torch.no_grad():
                    ref = ref_fn()
                    got = ours(w[precision][op])
                    torch.cuda.synchronize()
                notes: list[str] = []
                _agree(op, got, ref, precision, notes)
                rec.update(status="ok", detail=notes[-1])
            except Exception as e:  # noqa: BLE001 (recorded: the check goes on)
                rec.update(status="failed", detail=f"{type(e).__name__}: {e}")
            records.append(rec)
    return records


def check_dcnv2_grid(cuda_lib: ctypes.CDLL) -> str:
    """Launch geometry the host cannot test: DCNv2 with N·groups above gridDim.z's 65,535 must launch (the kernel
    loops over the rest) and match torchvision on every image, the last ones included."""
    lib = _bind(cuda_lib)
    n = 70000
    x, w = torch.randn(n, 2, 3, 3, device="cuda"), torch.randn(4, 1, 1, 1, device="cuda")
    off, b = torch.randn(n, 2, 3, 3, device="cuda") * 0.5, torch.randn(4, device="cuda")
    y = torch.empty(n, 4, 3, 3, device="cuda")
    rc = lib.es_cuda_deform_conv2d(0, x.data_ptr(), n, 2, 3, 3, w.data_ptr(), 4, 1, 1, off.data_ptr(), None, b.data_ptr(),
                                   1, 1, 0, 0, 1, 1, 2, 1, 3, 3, y.data_ptr(), _stream())
    torch.cuda.synchronize()
    _check(rc, f"DCNv2 with N*groups = {2 * n}")
    err = (y - torchvision.ops.deform_conv2d(x, off, w, b)).abs().max().item()
    if not err < 1e-4:
        raise AssertionError(f"DCNv2 with N*groups = {2 * n}: max error {err}")
    return f"N*groups = {2 * n} launched, max error {err:.2e} against torchvision"


def run_all(cuda_lib_path: str, workloads=kernel_workloads, repeats: int = 30, on_section=None) -> dict:
    """Everything gpu_check runs on the device, as one JSON-able dict; a failing section is recorded and the rest
    still runs. Ordered so that a kernel fault, which poisons the CUDA context for what follows, costs the least:
    the ordinary shapes and their timings first, the hostile cases last. ``on_section(result)`` after each."""
    lib = ctypes.CDLL(cuda_lib_path)
    result: dict = {"device": torch.cuda.get_device_name(), "capability": "%d.%d" % torch.cuda.get_device_capability(),
                    "torch": torch.__version__, "torchvision": torchvision.__version__, "cuda": torch.version.cuda}
    sections = {
        "references": lambda: check_references(lib, workloads),
        "timing": lambda: time_kernels(lib, workloads, repeats=repeats),
        "dcnv2_grid": lambda: [{"kernel": "deform_conv2d", "case": "grid over 65,535", "status": "ok",
                                "detail": check_dcnv2_grid(lib)}],
        "panoptic_vs_cpu": lambda: [{"kernel": "panoptic_paste", "case": n, "status": "ok", "detail": ""}
                                    for n in check_panoptic(lib)],
        "hostile": lambda: check_hostile(lib, "cuda"),
    }
    for name, fn in sections.items():
        try:
            result[name] = fn()
        except Exception as e:  # noqa: BLE001 (recorded: the check goes on)
            result[name] = [{"kernel": name, "case": name, "status": "failed", "detail": f"{type(e).__name__}: {e}"}]
        print(f"cuda_check: {name} done", flush=True)
        if on_section is not None:
            on_section(result)
    return result


if __name__ == "__main__":
    import argparse
    import json
    import sys

    from edgeseg.io import write_text_atomic

    ap = argparse.ArgumentParser(description="scripts/gpu_check.sh's kernel checks and timings (needs a CUDA device)")
    ap.add_argument("--cuda-lib", required=True, help="libedgeseg_cuda.so built for this device")
    ap.add_argument("--out", required=True, help="the JSON file to write")
    ap.add_argument("--repeats", type=int, default=30)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("cuda_check: no CUDA device")
    # written after every section: a process killed by a kernel fault still leaves what ran before it
    run_all(a.cuda_lib, repeats=a.repeats,
            on_section=lambda r: write_text_atomic(a.out, json.dumps(r, indent=1, default=str) + "\n"))
