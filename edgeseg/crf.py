"""DeepLab's fully connected CRF (Chen et al., ICLR 2015 and TPAMI 2017; seed 001, "Fully Connected CRFs" and
"Mean field inference for Dense-CRF"): the reference post-processing and an exportable mean-field layer.

The energy (Krähenbühl & Koltun 2011, as DeepLab uses it): the unary is the network's −log p; the pairwise term is
a Potts compatibility times two Gaussian kernels over pixel positions p and intensities I (8-bit levels)::

    k(i, j) = w1 · exp(−|p_i − p_j|² / 2θα² − |I_i − I_j|² / 2θβ²)   (appearance)
            + w2 · exp(−|p_i − p_j|² / 2θγ²)                         (smoothness)

Mean field: Q ← softmax(logits + Σ_m w_m · filter_m(Q)) (Potts up to a per-pixel constant), ``iterations`` times.

- ``dense_crf``: the reference, pydensecrf2 (Krähenbühl's permutohedral-lattice code; optional extra ``crf``),
  every pixel connected, each kernel normalised symmetrically (the library's default).
- ``MeanFieldCRF``: the same iterations with each kernel cut to a ``window``×``window`` neighbourhood
  (ConvCRF-style), written with shifted slices, Mul, Add, Exp and Softmax only, so it exports to standard ONNX
  that ONNX Runtime and TensorRT's parser take. ``with_crf`` puts it behind a semantic model's logits.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from edgeseg.errors import EdgeSegError

# DeepLab's values (ICLR 2015 §4.1 and TPAMI 2017 §4.1): w2 = 3 and θγ = 3 fixed, 10 mean-field iterations;
# w1, θα, θβ found by cross-validation (published for DeepLab: w1 = 4, θα = 121, θβ = 5).
# ``window`` belongs to the exportable layer only.


@dataclass(frozen=True)
class CRFParams:
    iterations: int = 10
    w_appearance: float = 4.0   # w1
    theta_alpha: float = 121.0  # θα, pixels
    theta_beta: float = 5.0     # θβ, 8-bit intensity levels
    w_smoothness: float = 3.0   # w2
    theta_gamma: float = 3.0    # θγ, pixels
    window: int = 7             # exportable layer: k×k neighbourhood (odd)

    def checked(self) -> "CRFParams":
        """Refuse values mean field cannot use, with one line naming the parameter."""
        def bad(name, value, rule):
            return EdgeSegError(f"CRF parameter {name}={value} {rule}", f"pass --crf-{name.replace('_', '-')} as {rule[8:]}")

        it = self.iterations
        if not isinstance(it, (int, np.integer)) or isinstance(it, bool) or not 1 <= it <= 100:
            raise bad("iterations", it, "must be an integer in 1..100")
        for name in ("w_appearance", "w_smoothness"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= 1e3:
                raise bad(name, v, "must be a finite number in 0..1000")
        for name in ("theta_alpha", "theta_beta", "theta_gamma"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or not 1e-3 <= v <= 1e4:
                raise bad(name, v, "must be a finite width in 0.001..10000")
        k = self.window
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not (3 <= k <= 15 and k % 2):
            raise bad("window", k, "must be an odd integer in 3..15")
        return self

    @classmethod
    def from_dict(cls, d: dict) -> "CRFParams":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise EdgeSegError(f"unknown CRF parameter(s) {', '.join(unknown)}", f"use {', '.join(sorted(names))}")
        return cls(**d).checked()


# The seed's validation search (DeepLab fixes w2, θγ and searches w1, θα, θβ on val images), kept small; it reaches
# below DeepLab's values (w1 1, θα 10) because edgeseg's sets are small images (LiTS: 128²) where intensity
# separates the classes less than colour does in VOC (measured: benchmarks/results/crf_cpu.md).
SEARCH_GRID = {"w_appearance": (1.0, 3.0, 5.0), "theta_alpha": (10.0, 30.0, 121.0), "theta_beta": (3.0, 5.0, 10.0)}


def crf_params(crf) -> CRFParams:
    """``True`` (the defaults), a dict of fields or a ``CRFParams`` -> checked ``CRFParams``."""
    if crf is True:
        return CRFParams()
    if isinstance(crf, dict):
        return CRFParams.from_dict(crf)
    if isinstance(crf, CRFParams):
        return crf.checked()
    raise EdgeSegError(f"crf={crf!r} is not understood", "pass True, a dict of CRF parameters or a CRFParams")


# --- the reference: pydensecrf2 ---------------------------------------------------------------------------

def _densecrf():
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError:
        raise EdgeSegError("the dense CRF needs pydensecrf2, which is not installed",
                           "pip install 'edgeseg[crf]' (pydensecrf2 builds from source with a C++ compiler)") from None
    return dcrf


def has_dense_crf() -> bool:
    try:
        _densecrf()
        return True
    except EdgeSegError:
        return False


def log_softmax(logits: np.ndarray, axis: int = 0) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def dense_crf(image: np.ndarray, logits: np.ndarray, params: CRFParams = CRFParams()) -> np.ndarray:
    """C×H×W image in [0, 1] and K×H×W logits at the image's size -> K×H×W marginals Q after mean field."""
    dcrf = _densecrf()
    k, h, w = logits.shape
    if image.ndim != 3 or image.shape[1:] != (h, w):
        raise EdgeSegError(f"image {image.shape} and logits {logits.shape} differ in size", "pass both at the image's size")
    d = dcrf.DenseCRF2D(w, h, k)
    d.setUnaryEnergy(np.ascontiguousarray(-log_softmax(logits.astype(np.float32)).reshape(k, -1), np.float32))
    yx = np.mgrid[:h, :w].astype(np.float32)
    d.addPairwiseEnergy(np.ascontiguousarray((yx / params.theta_gamma).reshape(2, -1)), compat=float(params.w_smoothness))
    levels = image.astype(np.float32) * 255 / params.theta_beta
    feats = np.concatenate([yx / params.theta_alpha, levels]).reshape(2 + image.shape[0], -1)
    d.addPairwiseEnergy(np.ascontiguousarray(feats, np.float32), compat=float(params.w_appearance))
    return np.asarray(d.inference(params.iterations), np.float32).reshape(k, h, w)


def session_scores(session, image: np.ndarray) -> np.ndarray:
    """A float-contract session's K×H×W class scores for one C×H×W image, at the image's size, as logits
    (a sigmoid_binary model's probability p becomes the two-class log(1 − p), log p)."""
    from edgeseg.runtime.prepost import model_scores, preprocess, scores_at_image

    meta = session.meta
    check_crf_model(meta)
    x, size = preprocess(image, meta)
    scores = scores_at_image(model_scores(session.run(x), meta), meta, size)[0]
    if meta.output_kind == "sigmoid_binary":
        p = np.clip(scores[0], 1e-6, 1 - 1e-6)
        scores = np.log(np.stack([1 - p, p]))
    return scores


def check_crf_model(meta) -> None:
    """The CRF refines per-pixel class distributions: semantic float-contract models with softmax or one sigmoid."""
    if meta.task != "semantic":
        raise EdgeSegError(f"the CRF refines semantic label maps; model '{meta.model}' is {meta.task}",
                           "use --crf with a semantic model")
    if meta.io == "frames":
        raise EdgeSegError(f"model '{meta.model}' is a deploy graph (labels out), which has no scores to refine",
                           "use its float-contract export, or export the deploy graph with --crf")
    if meta.output_kind == "sigmoid_multilabel":
        raise EdgeSegError(f"model '{meta.model}' has independent sigmoid channels, not one distribution per pixel",
                           "use --crf with a softmax or sigmoid_binary model")


def crf_labels(session, image: np.ndarray, params: CRFParams, scores: np.ndarray | None = None) -> np.ndarray:
    """One image's H×W labels after the dense CRF (``scores``: ``session_scores``, when already computed)."""
    from edgeseg.runtime.prepost import label_dtype

    scores = session_scores(session, image) if scores is None else scores
    q = dense_crf(image, scores, params)
    if session.meta.output_kind == "sigmoid_binary":
        return (q[1] > session.meta.threshold).astype(np.uint8)
    return q.argmax(0).astype(label_dtype(session.meta.num_classes))


def search(session, dataset, limit: int | None = None, grid: dict | None = None, base: CRFParams = CRFParams(),
           progress: bool = True) -> list[tuple[CRFParams, float]]:
    """DeepLab's validation search: mIoU of the dense CRF for every combination of ``grid`` (default
    ``SEARCH_GRID``: w1, θα, θβ; the rest from ``base``), the network run once per image. Best first; the
    network's own mIoU is the entry with ``None`` parameters."""
    import itertools

    from tqdm import tqdm

    from edgeseg.metrics import ConfusionMatrix
    from edgeseg.runtime import predict

    meta = session.meta
    grid = grid or SEARCH_GRID
    n = len(dataset) if limit is None else min(limit, len(dataset))
    items = []
    plain = ConfusionMatrix(meta.num_classes, meta.ignore_index)
    for i in range(n):
        image, mask = dataset.raw(i)
        items.append((image, mask, session_scores(session, image)))
        plain.update(predict(session, image)["labels"], mask)
    results: list = [(None, plain.scores().miou)]
    combos = [dict(zip(grid, v)) for v in itertools.product(*grid.values())]
    for combo in tqdm(combos, desc="crf search", disable=not progress, leave=False):
        params = replace(base, **combo).checked()
        cm = ConfusionMatrix(meta.num_classes, meta.ignore_index)
        for image, mask, scores in items:
            cm.update(crf_labels(session, image, params, scores), mask)
        results.append((params, cm.scores().miou))
    return sorted(results, key=lambda r: -r[1])


def compare(session, exported, dataset, params: CRFParams = CRFParams(), band: int = 3) -> dict:
    """How much of the dense CRF the exportable layer keeps, on every image of ``dataset``: the float-contract softmax
    ``session`` alone ("none"), with the dense CRF ("dense"), and ``exported``, its graph with the layer (``export
    --crf``, softmax models only; "local"). Per name: ``miou``, ``boundary_miou`` (over the pixels within ``band`` px of
    a ground-truth class edge, ``metrics.boundary_band``) and ``per_class_iou``; ``local_vs_dense_label_agreement``:
    the share of pixels where the layer's labels equal the dense CRF's. ``session`` runs once per image for "none"
    and "dense" alike."""
    from edgeseg.metrics import ConfusionMatrix, boundary_band
    from edgeseg.runtime import predict

    meta = session.meta
    check_crf_model(meta)
    whole, near = ({name: ConfusionMatrix(meta.num_classes, meta.ignore_index) for name in ("none", "dense", "local")}
                   for _ in range(2))
    agree = total = 0
    for i in range(len(dataset)):
        image, mask = dataset.raw(i)
        scores = session_scores(session, image)
        labels = {"none": scores.argmax(0), "dense": crf_labels(session, image, params, scores),
                  "local": predict(exported, image)["labels"]}
        edge_mask = np.where(boundary_band(mask, band), mask, meta.ignore_index)  # the rest is not scored
        for name, lab in labels.items():
            whole[name].update(lab, mask)
            near[name].update(lab, edge_mask)
        agree += int((labels["local"] == labels["dense"]).sum())
        total += mask.size
    return {"miou": {n: cm.scores().miou for n, cm in whole.items()},
            "boundary_miou": {n: cm.scores().miou for n, cm in near.items()},
            "per_class_iou": {n: cm.scores().per_class_iou for n, cm in whole.items()},
            "local_vs_dense_label_agreement": agree / total}


# --- the exportable layer -------------------------------------------------------------------------------

def _torch_layer():
    import torch
    import torch.nn.functional as F
    from torch import nn

    class MeanFieldCRF(nn.Module):
        """Mean field with both kernels cut to a ``window``×``window`` neighbourhood, each normalised symmetrically
        over it as pydensecrf2 normalises over the image. Messages come from the neighbours only (j ≠ i, the
        seed's formula: a self term, measured, keeps noisy labels); the normaliser counts the pixel itself with
        weight 1, as the library's lattice does, which also keeps it ≥ 1 (a 1e-20 guard vanishes in ONNX Runtime).

        ``forward(x, logits)``: ``x`` the model's normalised N×C×H×W input (intensities are recovered from
        ``mean``/``std``/``pixel_scale``), ``logits`` N×K×H×W at the same size -> refined logits (whose softmax is
        the last Q). Neighbours outside the image weigh nothing. Offsets are constant slices of a zero-padded
        tensor (no shape arithmetic in the graph), unrolled."""

        def __init__(self, params: CRFParams, mean, std, pixel_scale: float = 1 / 255):
            super().__init__()
            self.p = params.checked()
            c = len(mean)
            # preprocess: x = (image · 255 · pixel_scale − mean) / std, so the 8-bit level is (x · std + mean) / pixel_scale
            self.register_buffer("a", (torch.tensor(std, dtype=torch.float32) / pixel_scale).view(1, c, 1, 1), persistent=False)
            self.register_buffer("b", (torch.tensor(mean, dtype=torch.float32) / pixel_scale).view(1, c, 1, 1), persistent=False)
            r = params.window // 2
            self.offsets = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if (dy, dx) != (0, 0)]

        def _shift(self, t, dy: int, dx: int):
            """``t`` (padded by r on every side) at offset (dy, dx): the neighbour's value at each pixel."""
            r = self.p.window // 2
            return t[:, :, r + dy: (dy - r) or None, r + dx: (dx - r) or None]

        def forward(self, x, logits):
            p, r = self.p, self.p.window // 2
            levels = (x * self.a + self.b) * (255.0 / p.theta_beta)  # intensities in units of θβ
            pad = (r, r, r, r)
            lp = F.pad(levels, pad)
            vp = F.pad(torch.ones_like(levels[:, :1]), pad)  # 1 inside the image, 0 in the padding
            app, smo = [], []
            for dy, dx in self.offsets:
                d2 = dy * dy + dx * dx
                valid = self._shift(vp, dy, dx)
                diff = levels - self._shift(lp, dy, dx)
                app.append(valid * torch.exp((diff * diff).sum(1, keepdim=True) * -0.5
                                             - d2 / (2 * p.theta_alpha ** 2)))
                smo.append(valid * math.exp(-d2 / (2 * p.theta_gamma ** 2)))
            na = torch.rsqrt(1 + sum(app))
            ns = torch.rsqrt(1 + sum(smo))
            # Both kernels, both weights and both symmetric normalisers fold into one N×1×H×W map per offset,
            # computed once: an iteration is then one Slice, Mul and Add per offset.
            pna, pns = F.pad(na, pad), F.pad(ns, pad)
            coef = [p.w_appearance * na * ka * self._shift(pna, dy, dx) + p.w_smoothness * ns * ks * self._shift(pns, dy, dx)
                    for (dy, dx), ka, ks in zip(self.offsets, app, smo)]
            q = torch.softmax(logits, 1)
            refined = logits
            for _ in range(p.iterations):
                qp = F.pad(q, pad)
                message = 0
                for (dy, dx), c in zip(self.offsets, coef):
                    message = message + c * self._shift(qp, dy, dx)
                refined = logits + message
                q = torch.softmax(refined, 1)
            return refined

    class WithCRF(nn.Module):
        """A semantic model with ``MeanFieldCRF`` behind its logits (upsampled to the input first, so the
        exported ``output_stride`` is 1); other outputs pass through."""

        def __init__(self, model, meta, params: CRFParams):
            super().__init__()
            self.model, self.key, self.stride = model, meta.logits_output, meta.output_stride
            self.crf = MeanFieldCRF(params, meta.mean, meta.std, meta.pixel_scale)
            for name in ("edgeseg_config", "task", "normalization", "size_divisor", "class_names"):
                if hasattr(model, name):
                    setattr(self, name, getattr(model, name))

        def forward(self, x):
            out = self.model(x)
            logits = out[self.key] if isinstance(out, dict) else out
            if self.stride != 1:
                logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
            refined = self.crf(x, logits)
            return {**out, self.key: refined} if isinstance(out, dict) else refined

    return MeanFieldCRF, WithCRF


def mean_field_crf(params: CRFParams, mean, std, pixel_scale: float = 1 / 255):
    """The exportable layer (a ``torch.nn.Module``: ``forward(x, logits)``)."""
    return _torch_layer()[0](params, mean, std, pixel_scale)


def with_crf(model, meta, crf):
    """``model`` with the exportable CRF behind its logits, and the metadata to export it with (``output_stride``
    1; the parameters recorded in ``config["crf"]``). ``crf``: True, a dict of parameters or a ``CRFParams``."""
    from edgeseg.errors import ExportError

    params = crf_params(crf)
    if meta.task != "semantic" or meta.output_kind != "softmax":
        raise ExportError(f"--crf refines softmax class scores; model '{meta.model}' is {meta.task}, {meta.output_kind}",
                          "export a softmax semantic model with --crf, or refine on the host with 'eval/infer --crf'")
    wrapped = _torch_layer()[1](model, meta, params).train(model.training)  # export restores the wrapper's mode
    return wrapped, replace(meta, output_stride=1, config={**meta.config, "crf": asdict(params)})


__all__ = ["CRFParams", "SEARCH_GRID", "compare", "crf_labels", "crf_params", "dense_crf", "has_dense_crf", "mean_field_crf",
           "search", "session_scores", "with_crf"]
