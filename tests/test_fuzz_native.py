"""Fuzzing the ONNX Runtime custom ops (libedgeseg_ort.so): small graphs of one ``edgeseg`` node each,
with random shapes (mismatched, empty, wrong rank), attributes (out of range, of the wrong type or
length, missing, unknown), input types and NaN/inf/huge values. Each case must either run and give
outputs of the shape the node spec says, or be refused with an ONNX Runtime exception; never crash
the process. The cases run in a child process (a crash is a signal there, not a lost test run) and
are seeded: the failing case's seed is printed, and ``python tests/test_fuzz_native.py --case SEED``
replays it alone (with the plugin folder of ``$EDGESEG_PLUGIN_DIR``, e.g. the sanitized build)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
OPS = ["EdgeSegRoIAlign", "EdgeSegMultilevelRoIAlign", "EdgeSegDeformConv2d", "EdgeSegDCNv3", "EdgeSegPasteMasks",
       "EdgeSegPanopticPaste", "EdgeSegPanopticMerge"]
HOSTILE_INTS = [0, 1, 2, 3, 7, 15, 16, 64, 65, 1024, 1025, 4096, 10000, 65535, 65536, 2**31 - 1, 2**31, 2**40, -1, -2,
                -(2**31), -(2**63)]
HOSTILE_FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-7, 1e-6, 1e4, 1e5, 1e30, 3.4e38, -3.4e38, 1e-40, float("nan"),
                  float("inf"), float("-inf"), 458752.0]
HOSTILE_VALUES = np.array([np.nan, -np.nan, np.inf, -np.inf, 3.4e38, -3.4e38, 1e30, 1e-40, 1e-45, -0.0, 458752.0,
                           1e6, 2.0**31, -(2.0**31), 0.5], np.float32)
HOSTILE_INDICES = np.array([-(2**31), 2**31 - 1, -1, 0, 1, 2, 65536], np.int32)


def _plugin_dir() -> Path:
    return Path(os.environ.get("EDGESEG_PLUGIN_DIR") or ROOT / "build" / "plugins")


# ---- case generation (child process) ----------------------------------------------------------------

class Case:
    def __init__(self, op: str):
        self.op = op
        self.inputs: list[tuple[str, np.ndarray | None]] = []  # None: an omitted optional input
        self.attrs: dict = {}
        self.outputs: list[tuple[str, int]] = [("y", 1)]          # name, onnx elem type

    def describe(self) -> str:
        ins = ", ".join(f"{n}={'omitted' if a is None else f'{a.dtype}{list(a.shape)}'}" for n, a in self.inputs)
        return f"{self.op}({ins}; {self.attrs})"


def _values(rng, shape, dtype, kind):
    n = int(np.prod(shape, dtype=np.int64))
    if dtype == np.int32:
        a = rng.integers(-2, 6, n).astype(np.int32)
        if kind == "hostile":
            a = rng.choice(HOSTILE_INDICES, n)
    else:
        lo, hi = {"unit": (0, 1), "boxes": (-10, 70), "pixels": (0, 255)}.get(kind, (-2, 2))
        a = rng.uniform(lo, hi, n).astype(np.float32)
        poison = rng.random(n) < (0.25 if kind in ("hostile", "boxes") else 0.02)
        a[poison] = rng.choice(HOSTILE_VALUES, int(poison.sum()))
    return a.reshape(shape).astype(dtype)


def _generate(rng) -> Case:
    op = OPS[rng.integers(len(OPS))]
    c = Case(op)
    r = lambda lo, hi: int(rng.integers(lo, hi + 1))  # noqa: E731
    xk = "hostile" if rng.random() < 0.15 else "pixels"
    if op in ("EdgeSegRoIAlign", "EdgeSegMultilevelRoIAlign"):
        n, ch, k = r(1, 3), r(1, 4), r(0, 5)
        rois = ("rois", _values(rng, (k, 4), np.float32, "boxes"))
        batch = ("batch", _values(rng, (k,), np.int32, "hostile" if rng.random() < 0.3 else "indices"))
        c.attrs = dict(output_height=r(1, 6), output_width=r(1, 6), sampling_ratio=int(rng.choice([-1, 0, 1, 2, 64])),
                       aligned=r(0, 1))
        if op == "EdgeSegRoIAlign":
            c.inputs = [("x", _values(rng, (n, ch, r(1, 20), r(1, 20)), np.float32, xk)), rois, batch]
            c.attrs["spatial_scale"] = float(rng.choice([1.0, 0.5, 0.25, 2.0]))
        else:
            levels, first, base = r(1, 4), r(0, 3), r(2, 32)
            c.inputs = [rois, batch] + [(f"f{lvl}", _values(rng, (n, ch, max(1, base >> lvl), max(1, (base + 5) >> lvl)),
                                                             np.float32, xk)) for lvl in range(levels)]
            c.attrs.update(spatial_scales=[2.0 ** -(first + lvl) for lvl in range(levels)], first_level=first,
                           canonical_scale=224.0, canonical_level=4)
    elif op == "EdgeSegDeformConv2d":
        g, og = r(1, 2), r(1, 2)
        n, cin, cout = r(1, 2), g * og * r(1, 2), g * r(1, 2)
        kh, kw, s, p, d = r(1, 3), r(1, 3), r(1, 2), r(0, 1), r(1, 2)
        h, w = r(1, 9), r(1, 9)
        ho, wo = (h + 2 * p - d * (kh - 1) - 1) // s + 1, (w + 2 * p - d * (kw - 1) - 1) // s + 1
        ho_, wo_ = max(ho, 1), max(wo, 1)
        kk = kh * kw
        bias = _values(rng, (cout,), np.float32, "small") if rng.random() < 0.5 else np.zeros(0, np.float32)
        mask = _values(rng, (n, og * kk, ho_, wo_), np.float32, "unit") if rng.random() < 0.5 else np.zeros(0, np.float32)
        c.inputs = [("x", _values(rng, (n, cin, h, w), np.float32, xk)),
                    ("w", _values(rng, (cout, cin // g, kh, kw), np.float32, "small")),
                    ("offset", _values(rng, (n, 2 * og * kk, ho_, wo_), np.float32, "small")),
                    ("bias", None if rng.random() < 0.2 else bias), ("mask", None if rng.random() < 0.2 else mask)]
        c.attrs = dict(stride=[s, s], padding=[p, p], dilation=[d, d], groups=g, offset_groups=og)
    elif op == "EdgeSegDCNv3":
        g, kh, kw, s, p, d = r(1, 3), r(1, 4), r(1, 4), r(1, 2), r(0, 2), r(1, 2)
        n, ch, h, w = r(1, 2), g * r(1, 3), r(1, 9), r(1, 9)
        ho, wo = max((h + 2 * p - d * (kh - 1) - 1) // s + 1, 1), max((w + 2 * p - d * (kw - 1) - 1) // s + 1, 1)
        gk = g * kh * kw
        c.inputs = [("x", _values(rng, (n, h, w, ch), np.float32, xk)),
                    ("offset", _values(rng, (n, ho, wo, 2 * gk), np.float32, "small")),
                    ("mask", _values(rng, (n, ho, wo, gk), np.float32, "unit"))]
        c.attrs = dict(kernel=[kh, kw], stride=[s, s], padding=[p, p], dilation=[d, d], group=g,
                       offset_scale=float(rng.choice([1.0, 0.5, 2.0])))
    elif op == "EdgeSegPasteMasks":
        rr = r(0, 4)
        image = (r(1, 30), r(1, 30)) if rng.random() < 0.7 else (1, r(1, 3), r(1, 30), r(1, 30))
        c.inputs = [("masks", _values(rng, (rr, r(1, 7), r(1, 7)), np.float32, "unit")),
                    ("boxes", _values(rng, (rr, 4), np.float32, "boxes")), ("image", np.zeros(image, np.float32))]
        c.attrs = dict(threshold=float(rng.choice([0.5, -1.0, 0.0, 1.0])))
    elif op == "EdgeSegPanopticMerge":
        h, w, rr, nc = r(1, 16), r(1, 16), r(0, 4), r(1, 6)
        rule = int(rng.choice([0, 1]))
        m = (r(1, 7), r(1, 7)) if rule == 0 else (0, 0)
        c.inputs = [("semantic", rng.integers(-1, nc + 2, (h, w)).astype(np.int32)),
                    ("masks", _values(rng, (rr, *m), np.float32, "unit")),
                    ("boxes", _values(rng, (rr, 4), np.float32, "boxes")),
                    ("scores", _values(rng, (rr,), np.float32, "unit")), ("classes", rng.integers(-1, nc + 1, rr).astype(np.int32))]
        c.attrs = dict(num_classes=nc, num_thing_classes=r(0, nc), min_stuff_area=int(rng.choice([0, 1, 4, 4096])),
                       overlap_threshold=0.5, score_threshold=float(rng.choice([0.0, 0.5])), mask_rule=rule)
        c.outputs = [("ids", 6), ("segments", 1)]  # INT32, FLOAT
    else:
        h, w, rr = r(1, 16), r(1, 16), r(0, 4)
        nc = r(1, 6)
        c.inputs = [("semantic", rng.integers(-1, nc + 2, (h, w)).astype(np.int32)),
                    ("masks", _values(rng, (rr, h, w), np.float32, "unit")),
                    ("scores", _values(rng, (rr,), np.float32, "unit")), ("classes", rng.integers(-1, nc + 1, rr).astype(np.int32))]
        c.attrs = dict(num_classes=nc, num_thing_classes=r(0, nc), min_stuff_area=int(rng.choice([0, 1, 4, 4096])),
                       overlap_threshold=0.5, score_threshold=float(rng.choice([0.0, 0.5])))
        c.outputs = [("ids", 6), ("segments", 1)]  # INT32, FLOAT
    _mutate(rng, c)
    return c


def _mutate(rng, c: Case) -> None:
    for _ in range(int(rng.integers(0, 4))):
        kind = int(rng.integers(0, 10))
        if kind <= 2 and c.attrs:                      # an attribute: hostile value, other type, other length
            name = list(c.attrs)[int(rng.integers(len(c.attrs)))]
            v = c.attrs[name]
            how = int(rng.integers(0, 6))
            if how == 0:
                c.attrs[name] = float(rng.choice(HOSTILE_FLOATS)) if isinstance(v, float) else int(rng.choice(HOSTILE_INTS))
            elif how == 1:                              # int <-> float (a float where an int is expected)
                if isinstance(v, float):
                    c.attrs[name] = int(v) if np.isfinite(v) and abs(v) < 2**62 else 1
                elif isinstance(v, list) and v and isinstance(v[0], int):
                    c.attrs[name] = [float(x) for x in v]
                elif isinstance(v, int):
                    c.attrs[name] = float(v) + 0.5
            elif how == 2:                              # a one-value (or three-value) list, or a list for a scalar
                c.attrs[name] = (v[:1] if len(v) > 1 else v * 3) if isinstance(v, list) else [v, v] if not isinstance(v, str) else v
            elif how == 3:
                c.attrs[name] = "seven"
            elif how == 4:
                del c.attrs[name]
            else:
                c.attrs[name] = [int(rng.choice(HOSTILE_INTS)), int(rng.choice(HOSTILE_INTS))] if isinstance(v, list) and v and isinstance(v[0], int) else v
        elif kind == 3:
            c.attrs["not_a_field"] = 3
        elif kind <= 6 and c.inputs:                    # a shape: one dimension off, emptied, a rank more or less
            i = int(rng.integers(len(c.inputs)))
            name, a = c.inputs[i]
            if a is None:
                continue
            shape = list(a.shape)
            how = int(rng.integers(0, 4))
            if how == 0 and shape:
                j = int(rng.integers(len(shape)))
                shape[j] = max(0, shape[j] + int(rng.choice([-1, 1, 2])))
            elif how == 1 and shape:
                shape[int(rng.integers(len(shape)))] = 0
            elif how == 2:
                shape = shape + [int(rng.integers(1, 3))]
            else:
                shape = shape[:-1]
            if int(np.prod(shape, dtype=np.int64)) <= 1 << 18:
                c.inputs[i] = (name, _values(rng, tuple(shape), a.dtype.type, "hostile" if rng.random() < 0.3 else "small"))
        elif kind == 7 and c.inputs:                    # another element type
            i = int(rng.integers(len(c.inputs)))
            name, a = c.inputs[i]
            if a is not None:
                c.inputs[i] = (name, a.astype(rng.choice([np.float64, np.int64, np.float16, np.int32, np.float32])))
        elif kind == 9 and c.inputs:                    # an input left out (its name "")
            i = int(rng.integers(len(c.inputs)))
            c.inputs[i] = (c.inputs[i][0], None)
        elif c.inputs:                                  # poisoned values
            i = int(rng.integers(len(c.inputs)))
            name, a = c.inputs[i]
            if a is not None and a.size:
                c.inputs[i] = (name, _values(rng, a.shape, np.int32 if a.dtype == np.int32 else np.float32, "hostile").astype(a.dtype))


_ONNX_TYPE = {np.dtype(np.float32): 1, np.dtype(np.int32): 6, np.dtype(np.float64): 11, np.dtype(np.int64): 7,
              np.dtype(np.float16): 10}


def _spec_fields() -> dict[str, dict[str, dict]]:
    """plugins/spec/nodes.json, the node spec: op -> field -> its entry (default, required, ...)."""
    spec = json.loads((ROOT / "plugins" / "spec" / "nodes.json").read_text())
    return {op: {f["name"]: f for f in node["fields"]} for op, node in spec["nodes"].items()}


SPEC_FIELDS = _spec_fields()


def _expected_shapes(c: Case) -> list[tuple[int, ...]]:
    """The node spec's output shapes for the inputs and attributes given (absent fields: the spec's defaults)."""
    a = {n: x for n, x in c.inputs}
    at = {name: f["default"] for name, f in SPEC_FIELDS[c.op].items() if not f.get("required")} | c.attrs
    pair = lambda name, d: tuple(at.get(name, d))  # noqa: E731
    if c.op in ("EdgeSegRoIAlign", "EdgeSegMultilevelRoIAlign"):
        ch = a["x"].shape[1] if c.op == "EdgeSegRoIAlign" else a["f0"].shape[1]
        return [(a["rois"].shape[0], ch, at.get("output_height", 1), at.get("output_width", 1))]
    if c.op == "EdgeSegDeformConv2d":
        x, w = a["x"], a["w"]
        (sh, sw), (ph, pw), (dh, dw) = pair("stride", (1, 1)), pair("padding", (0, 0)), pair("dilation", (1, 1))
        ho = (x.shape[2] + 2 * ph - dh * (w.shape[2] - 1) - 1) // sh + 1
        wo = (x.shape[3] + 2 * pw - dw * (w.shape[3] - 1) - 1) // sw + 1
        return [(x.shape[0], w.shape[0], ho, wo)]
    if c.op == "EdgeSegDCNv3":
        x = a["x"]
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (pair("kernel", (3, 3)), pair("stride", (1, 1)), pair("padding", (0, 0)),
                                                  pair("dilation", (1, 1)))
        return [(x.shape[0], (x.shape[1] + 2 * ph - dh * (kh - 1) - 1) // sh + 1,
                 (x.shape[2] + 2 * pw - dw * (kw - 1) - 1) // sw + 1, x.shape[3])]
    if c.op == "EdgeSegPasteMasks":
        return [(a["masks"].shape[0],) + tuple(a["image"].shape[-2:])]
    return [tuple(a["semantic"].shape),
            (a["masks"].shape[0] + at.get("num_classes", 1) - at.get("num_thing_classes", 0), 5)]


def known_failures() -> set[str]:
    """The failure classes plugins/fuzz/known_failures.txt lists (reported, awaiting a fix): tolerated."""
    path = ROOT / "plugins" / "fuzz" / "known_failures.txt"
    if not path.is_file():
        return set()
    return {ln.split("#")[0].strip() for ln in path.read_text().splitlines()} - {""}


def _failure_class(c: Case, names: list[str]) -> str:
    if "" in names:  # ORT's lite Tensor wrapper reads a left-out input (a null OrtValue) before Compute runs
        return "ort-omitted-input"
    return ""


def _run_case(ort, onnx, lib: str, c: Case, known: set[str] = frozenset()) -> str:
    """'ran', 'refused' (an ONNX Runtime exception), 'known' (a known failure class, not run) or raises
    AssertionError."""
    from onnx import helper
    names = [n if a is not None else "" for n, a in c.inputs]
    while names and names[-1] == "":
        names.pop()
    if _failure_class(c, names) in known:
        return "known"
    node = helper.make_node(c.op, names, [n for n, _ in c.outputs], domain="edgeseg", **c.attrs)
    graph = helper.make_graph(
        [node], "fuzz",
        [helper.make_tensor_value_info(n, _ONNX_TYPE[a.dtype], None) for n, a in c.inputs if a is not None],
        [helper.make_tensor_value_info(n, t, None) for n, t in c.outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("edgeseg", 1)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.register_custom_ops_library(lib)
    so.log_severity_level = 4
    so.intra_op_num_threads = 1
    feed = {n: a for n, a in c.inputs if a is not None}
    try:
        session = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        outs = session.run(None, feed)
    except Exception as e:  # noqa: BLE001 — only ONNX Runtime's own exceptions count as a refusal
        if not type(e).__module__.startswith("onnxruntime"):
            raise AssertionError(f"{c.describe()}: raised {type(e).__module__}.{type(e).__name__}: {e}") from None
        return "refused"
    missing = [name for name, f in SPEC_FIELDS[c.op].items() if f.get("required") and name not in c.attrs]
    assert not missing, f"{c.describe()}: ran without the required attribute(s) {missing}"
    want = _expected_shapes(c)
    got = [tuple(o.shape) for o in outs]
    assert got == want, f"{c.describe()}: ran with output shapes {got}, the node spec says {want}"
    if c.op == "EdgeSegPasteMasks" and c.attrs.get("threshold", 0.5) >= 0 and outs[0].size:
        assert np.isin(outs[0], (0.0, 1.0)).all(), f"{c.describe()}: a thresholded paste wrote values other than 0/1"
    return "ran"


def child(seed: int, seconds: float, max_cases: int, only: int | None = None) -> dict:
    import onnx
    import onnxruntime as ort
    lib = str(_plugin_dir() / "libedgeseg_ort.so")
    counts = {"ran": 0, "refused": 0, "known": 0}
    known = known_failures()
    start = time.monotonic()
    cases = [only] if only is not None else range(max_cases)
    for i in cases:
        if only is None and time.monotonic() - start > seconds:
            break
        case_seed = seed * 1_000_003 + i
        c = _generate(np.random.default_rng(case_seed))
        print(f"CASE {case_seed} {c.describe()}", flush=True)  # the last one printed is the one that crashed
        counts[_run_case(ort, onnx, lib, c, known)] += 1
    counts["seconds"] = round(time.monotonic() - start, 1)
    return counts


# ---- the test ------------------------------------------------------------------------------------------

def _fuzz_seconds() -> float:
    return float(os.environ.get("EDGESEG_ORT_FUZZ_SECONDS", "20"))


@pytest.mark.skipif(not (_plugin_dir() / "libedgeseg_ort.so").is_file(),
                    reason="libedgeseg_ort.so not built (scripts/build_plugins.sh fetches ONNX Runtime's headers)")
@pytest.mark.parametrize("seed", [1])
def test_ort_custom_ops_survive_random_graphs(seed):
    pytest.importorskip("onnxruntime")
    cmd = [sys.executable, __file__, "--seed", str(seed), "--seconds", str(_fuzz_seconds())]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=_fuzz_seconds() * 4 + 120)
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
    if proc.returncode < 0:
        cases = [ln for ln in proc.stdout.splitlines() if ln.startswith("CASE ")]
        last = cases[-1].split()[1] if cases else "?"
        pytest.fail(f"the fuzz process died of {signal.Signals(-proc.returncode).name} in case seed {last} "
                    f"(replay: python tests/test_fuzz_native.py --case {last}):\n{tail}")
    assert proc.returncode == 0, f"the fuzz process failed (rc {proc.returncode}):\n{tail}"
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    # Enough cases to mean something, and both outcomes seen (a generator that only makes refusals tests little).
    assert summary["ran"] >= 20 and summary["refused"] >= 20, summary


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=25.0)
    parser.add_argument("--max-cases", type=int, default=1_000_000)
    parser.add_argument("--case", type=int, help="replay one case by its printed seed")
    args = parser.parse_args()
    if args.case is not None:
        result = child(args.case // 1_000_003, 0, 0, only=args.case % 1_000_003)
    else:
        result = child(args.seed, args.seconds, args.max_cases)
    print(json.dumps(result))
