"""CUDA side of benchmarks/ops_bench.py: ctypes bindings of libedgeseg_cuda (the plugins' CUDA launchers),
correctness against torchvision's CUDA ops and the PyTorch references (FP32 and FP16, tolerances from
edgeseg.tolerances), and the roofline arithmetic. Raises if a launcher disagrees: gpu_check fails loudly."""
from __future__ import annotations

import ctypes

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
