"""The hostile-input corpus: files a user (or an attacker) may hand edgeseg, generated on the spot, each
run through the verb that reads it in a child process, and the rules every case must keep:

- no signal (the child is not killed), no Python traceback, exit status 2, exactly one stderr line
  ``edgeseg <verb>: error: <what> -- <fix>``;
- nothing new in the output folder, no marker file (no code named by the file ran);
- peak RSS of the child under 2 GB, no hang (a time limit per case).

``CASES`` is the one list: tests/test_hostile.py asserts the rules on it, benchmarks/hostile_report.py
counts it into benchmarks/results/hostile.md. Adding a case is one line: a name, the verb's arguments
as a function of the shared fixtures ``f`` (``Fixtures``) and the case's own folder ``d``, and words
the error line must contain.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import resource  # noqa: F401  (ru_maxrss units are documented there: KiB on Linux)
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

RSS_LIMIT_BYTES = 2 << 30
TIME_LIMIT_S = 240
MARKER = "HOSTILE_CODE_RAN"  # created only if a file's payload gets executed


@dataclass(frozen=True)
class Case:
    name: str
    args: Callable[["Fixtures", Path], list]  # (fixtures, case folder) -> argv after "edgeseg"
    words: tuple[str, ...] = ()  # the error line must contain each


@dataclass
class Result:
    case: str
    returncode: int
    stderr: str
    seconds: float
    max_rss_bytes: int
    timed_out: bool
    new_files: list[str]
    marker: bool

    @property
    def lines(self) -> list[str]:
        return [l for l in self.stderr.splitlines() if l.strip()]

    @property
    def crashed(self) -> bool:  # killed by a signal or hung
        return self.returncode < 0 or self.timed_out

    @property
    def traceback(self) -> bool:
        return "Traceback" in self.stderr

    @property
    def silent(self) -> bool:  # a hostile input accepted without a word: a silent wrong answer
        return self.returncode == 0

    def problems(self, case: Case) -> list[str]:
        out = []
        if self.timed_out:
            out.append(f"hung (killed after {TIME_LIMIT_S} s)")
        if self.returncode < 0:
            out.append(f"killed by signal {-self.returncode}")
        if self.traceback:
            out.append("traceback")
        if self.returncode != 2:
            out.append(f"exit status {self.returncode}, not 2")
        if len(self.lines) != 1:
            out.append(f"{len(self.lines)} stderr lines")
        elif not re.match(r"edgeseg( [a-z]+)?: error: .+ -- .+", self.lines[0]):
            out.append("stderr is not 'edgeseg <verb>: error: <what> -- <fix>'")
        else:
            out += [f"error line lacks {w!r}" for w in case.words if w not in self.lines[0]]
        if self.new_files:
            out.append(f"left files {self.new_files}")
        if self.marker:
            out.append("the file's code ran (marker created)")
        if self.max_rss_bytes >= RSS_LIMIT_BYTES:
            out.append(f"peak RSS {self.max_rss_bytes / 2**30:.2f} GiB")
        return out


# ---------------------------------------------------------------- shared fixtures (built once per run)

class Fixtures:
    """One small exported model, a foreign ONNX (no metadata), a tensorrt-flavour ONNX, a checkpoint and
    an image, in ``root``; everything hostile is derived from them per case."""

    def __init__(self, root: Path):
        import torch
        from PIL import Image
        from torch import nn

        from edgeseg.export import ModelMeta, export_onnx
        from edgeseg.models import create
        from edgeseg.models.checkpoint import save_checkpoint

        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        model = create("unet_padded", num_classes=2, in_channels=1, base_width=4, depth=2).eval()
        meta = {"class_names": ["bg", "fg"], "in_channels": 1, "mean": [0.5], "std": [0.25]}
        self.onnx = root / "model.onnx"
        export_onnx(model, self.onnx, meta=ModelMeta(model="unet_padded", **meta, size_divisor=model.size_divisor))
        self.checkpoint = root / "model.pt"
        save_checkpoint(self.checkpoint, model, meta)
        self.foreign = root / "foreign.onnx"
        torch.onnx.export(nn.Conv2d(1, 2, 3, padding=1), (torch.zeros(1, 1, 16, 16),), str(self.foreign), dynamo=False,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}})
        self.image = root / "slice.png"
        Image.fromarray((np.random.default_rng(0).random((40, 52)) * 255).astype(np.uint8)).save(self.image)
        self.tensorrt = root / "deform.onnx"
        self._export_tensorrt_flavour()

    def _export_tensorrt_flavour(self) -> None:
        """A semantic model whose graph holds an edgeseg plugin node (tensorrt flavour)."""
        import torch
        from torch import nn

        from edgeseg import ops
        from edgeseg.export import ModelMeta, export_onnx

        class DeformSeg(nn.Module):
            def __init__(self):
                super().__init__()
                self.offset = nn.Conv2d(1, 27, 3, padding=1)
                self.weight = nn.Parameter(torch.randn(2, 1, 3, 3))
                self.bias = nn.Parameter(torch.zeros(2))

            def forward(self, x):
                o = self.offset(x)
                return {"logits": ops.deform_conv2d(x, o[:, :18], self.weight, self.bias, 1, 1, 1, o[:, 18:].sigmoid())}

        meta = ModelMeta(model="deformseg", class_names=["a", "b"], in_channels=1, mean=[0.5], std=[0.25], size_divisor=1)
        export_onnx(DeformSeg().eval(), self.tensorrt, meta=meta, sample=torch.randn(1, 1, 16, 16), flavour="tensorrt")


# ---------------------------------------------------------------- builders of hostile files

def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def onnx_with_props(f: Fixtures, d: Path, **fields) -> Path:
    """The good model with some ``edgeseg.*`` metadata values replaced (raw strings, not JSON-encoded)."""
    import onnx

    proto = onnx.load(str(f.onnx))
    props = {p.key: p.value for p in proto.metadata_props}
    props.update({"edgeseg." + k: v for k, v in fields.items()})
    del proto.metadata_props[:]
    for k, v in props.items():
        proto.metadata_props.add(key=k, value=v)
    path = d / "meta.onnx"
    onnx.save(proto, str(path))
    return path


def foreign_with_sidecar(f: Fixtures, d: Path, text: str | None = None, **fields) -> Path:
    """The foreign ONNX with a sidecar: a valid one with ``fields`` changed (None deletes), or raw ``text``."""
    path = d / "foreign.onnx"
    path.write_bytes(f.foreign.read_bytes())
    good = {"model": "foreign", "class_names": ["a", "b"], "in_channels": 1, "mean": [0.5], "std": [0.25],
            "input_name": "x", "logits_output": "y", "size_divisor": 1}
    for k, v in fields.items():
        if v is None:
            good.pop(k, None)
        else:
            good[k] = v
    Path(str(path) + ".json").write_text(text if text is not None else json.dumps(good))
    return path


def checkpoint(d: Path, payload, name: str = "ck.pt") -> Path:
    import torch

    path = d / name
    torch.save(payload, path)
    return path


def good_payload(f: Fixtures, **changes) -> dict:
    import torch

    payload = torch.load(f.checkpoint, weights_only=True)
    for k, v in changes.items():
        if v is None:
            payload.pop(k, None)
        else:
            payload[k] = v
    return payload


class _RunsCode:
    """Unpickling this calls ``open(marker, "w")``: a payload that would leave a marker file if executed."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def pickle_payload(f: Fixtures, d: Path, zipped: bool) -> Path:
    marker = d.parent / MARKER
    if zipped:  # torch's zip format, the payload inside data.pkl
        return checkpoint(d, {"format": "edgeseg-checkpoint/1", "config": _RunsCode(marker)}, "zip_payload.pt")
    return _write(d / "legacy_payload.pt", pickle.dumps({"format": _RunsCode(marker)}, protocol=2))


def png(d: Path, width: int, height: int, mode: str = "1", name: str = "big.png") -> Path:
    """A large PNG written cheaply: 1-bit (or palette) pixels compress to almost nothing."""
    from PIL import Image

    path = d / name
    Image.new(mode, (width, height)).save(path, optimize=False)
    return path


def png_header_only(d: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width``×``height`` but holds no pixel data (decoders must not trust it)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return _write(d / "liar.png", b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def external_data_link(f: Fixtures, d: Path) -> Path:
    """An ONNX whose initializer's external data is a link to /dev/zero, 16 GiB long."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.zeros((2,), np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    w.external_data.add(key="location", value="zeros.bin")
    w.external_data.add(key="length", value=str(1 << 34))
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [w])
    path = d / "external.onnx"
    onnx.save(helper.make_model(graph), str(path))
    os.symlink("/dev/zero", d / "zeros.bin")
    return path


def _graph_with_meta(d: Path, name: str, nodes, initializers) -> Path:
    """A hand-written graph ``input`` (N×1×H×W) -> ``logits`` carrying valid edgeseg metadata."""
    import onnx
    from onnx import TensorProto, helper

    from edgeseg.export.metadata import ModelMeta, write_metadata

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 1, "h", "w"])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)], initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)
    write_metadata(proto, ModelMeta(model=name, class_names=["a", "b"], in_channels=1, mean=[0.5], std=[0.25],
                                    size_divisor=1))
    path = d / f"{name}.onnx"
    onnx.save(proto, str(path))
    return path


def refuses_at_run(f: Fixtures, d: Path) -> Path:
    """Valid metadata, but the graph reshapes its input to a fixed shape: ONNX Runtime fails inside run()."""
    from onnx import TensorProto, helper

    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [1, 2, 7, 7])
    nodes = [helper.make_node("Concat", ["input", "input"], ["both"], axis=1),
             helper.make_node("Reshape", ["both", "shape"], ["logits"])]
    return _graph_with_meta(d, "fixed", nodes, [shape])


def allocates_at_run(f: Fixtures, d: Path) -> Path:
    """Valid metadata, but the graph expands its input to 1×2×10^6×10^6 (8 TB) while running."""
    from onnx import TensorProto, helper

    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [1, 2, 1_000_000, 1_000_000])
    nodes = [helper.make_node("ReduceMean", ["input"], ["mean"], keepdims=1),
             helper.make_node("Expand", ["mean", "shape"], ["logits"])]
    return _graph_with_meta(d, "expands", nodes, [shape])


def plugin_node_edited(f: Fixtures, d: Path, attrs: dict | None = None, inputs: list[str] | None = None) -> Path:
    """The tensorrt-flavour model with its EdgeSegDeformConv2d node's attributes replaced (any type: a float
    where an int is due...) or its inputs renamed ("" leaves one out): what a hand-edited or hostile file holds."""
    import onnx
    from onnx import helper

    proto = onnx.load(str(f.tensorrt))
    node = next(n for n in proto.graph.node if n.op_type == "EdgeSegDeformConv2d")
    for name, value in (attrs or {}).items():
        kept = [a for a in node.attribute if a.name != name]
        del node.attribute[:]
        node.attribute.extend(kept + [helper.make_attribute(name, value)])
    if inputs is not None:
        del node.input[:]
        node.input.extend(inputs)
    path = d / "plugin.onnx"
    onnx.save(proto, str(path))
    return path


def _deform_inputs(f: Fixtures, leave_out: int) -> list[str]:
    import onnx

    node = next(n for n in onnx.load(str(f.tensorrt)).graph.node if n.op_type == "EdgeSegDeformConv2d")
    return [("" if i == leave_out else name) for i, name in enumerate(node.input)]


def under_a_file(d: Path, name: str) -> Path:
    (d / "blocker").write_text("a regular file where a folder is expected\n")
    return d / "blocker" / name


def truncated_zip_checkpoint(f: Fixtures, d: Path) -> Path:
    data = f.checkpoint.read_bytes()
    return _write(d / "cut.pt", data[: len(data) // 2])


def zip_bomb_checkpoint(d: Path) -> Path:
    """A zip whose one member claims to inflate to 4 GiB of zeros (torch's format stores, never inflates)."""
    path = d / "bomb.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("archive/data.pkl", "w", force_zip64=True) as member:
            block = bytes(1 << 20)
            for _ in range(64):  # 64 MiB of zeros: a few hundred KiB on disk
                member.write(block)
    return path


# ---------------------------------------------------------------- builders of hostile data sets (round two)

def tiny_png(path: Path, width: int = 8, height: int = 8, mode: str = "RGB") -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (width, height)).save(path)
    return path


def coco_json(d: Path, annotations: list | None = None, images: list | None = None, text: str | bytes | None = None,
              size: tuple[int, int] = (8, 8), categories: list | None = None) -> str:
    """``coco:<images>,<json>`` for a set of one ``size`` (W, H) image (1-bit: big ones cost nothing) and the given
    records (default: one triangle), or the raw ``text`` as the JSON."""
    tiny_png(d / "images" / "a.png", *size, mode="1")
    path = d / "instances.json"
    if text is not None:
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    else:
        w, h = size
        data = {"images": images if images is not None else [{"id": 1, "file_name": "a.png", "width": w, "height": h}],
                "annotations": annotations if annotations is not None else [
                    {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 6, 1, 1, 6]]}],
                "categories": categories if categories is not None else [{"id": 1, "name": "thing"}]}
        path.write_text(json.dumps(data))
    return f"coco:{d / 'images'},{path}"


def polygon_ann(i: int, points, image_id: int = 1) -> dict:
    return {"id": i, "image_id": image_id, "category_id": 1, "segmentation": [[float(v) for v in points]]}


def zigzag(n: int, w: int, h: int) -> list:
    """``n`` points alternating between the left and right edges: every edge spans the image."""
    return [v for k in range(n) for v in ((0 if k % 2 else w - 1), k * (h - 1) / n)]


def panoptic_json(d: Path, segments: list | None = None, images: list | None = None, text: str | None = None,
                  png_name: str = "a.png") -> str:
    """``coco-panoptic:<images>,<json>,<pngs>`` for one 8×8 image whose PNG is all segment 1."""
    from PIL import Image

    tiny_png(d / "images" / "a.png")
    (d / "png").mkdir(exist_ok=True)
    Image.new("RGB", (8, 8), (1, 0, 0)).save(d / "png" / "a.png")
    path = d / "panoptic.json"
    if text is not None:
        path.write_text(text)
    else:
        path.write_text(json.dumps({
            "images": images if images is not None else [{"id": 1, "file_name": "a.png", "width": 8, "height": 8}],
            "annotations": [{"image_id": 1, "file_name": png_name,
                             "segments_info": segments if segments is not None else [{"id": 1, "category_id": 1}]}],
            "categories": [{"id": 1, "name": "thing", "isthing": 1}]}))
    return f"coco-panoptic:{d / 'images'},{path},{d / 'png'}"


def folder_set(d: Path, size: tuple[int, int] = (8, 8), count: int = 1, mode: str = "1", classes: int = 2,
               mask_value: int = 0, image_mode: str = "RGB") -> str:
    """``folder:<root>``: ``count`` images of ``size`` (W, H), all links to one file (cheap however large), masks alike."""
    from PIL import Image

    root = d / "set"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("".join(f"c{i}\n" for i in range(classes)))
    Image.new(image_mode, size).save(root / "one_image.png")
    Image.new(mode, size, mask_value).save(root / "one_mask.png")
    for i in range(count):
        (root / "images" / f"{i}.png").symlink_to(root / "one_image.png")
        (root / "masks" / f"{i}.png").symlink_to(root / "one_mask.png")
    return f"folder:{root}"


def rgb_checkpoint(d: Path, classes: int = 2, **meta_changes) -> Path:
    """A 3-channel U-Net checkpoint (the data sets' images are RGB) with its meta changed."""
    from edgeseg.models import create
    from edgeseg.models.checkpoint import save_checkpoint

    meta = {"class_names": [f"c{i}" for i in range(classes)], "in_channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3,
            **meta_changes}
    path = d / "rgb.pt"
    save_checkpoint(path, create("unet_padded", num_classes=classes, in_channels=3, base_width=4, depth=2), meta)
    return path


def with_dataset(f: Fixtures, d: Path, dataset: str, args) -> Path:
    """The fixture checkpoint, its config naming ``dataset`` and ``args`` (what 'edgeseg train' records)."""
    return checkpoint(d, good_payload(f, meta={"class_names": ["bg", "fg"], "in_channels": 1, "mean": [0.5], "std": [0.25],
                                               "config": {"dataset": dataset, "dataset_args": args}}))


def float_tiff(d: Path, value: float) -> Path:
    """A float32 TIFF holding ``value`` somewhere, saved under a .png name (decoders go by content)."""
    from PIL import Image

    a = np.zeros((16, 16), np.float32)
    a[3, 4] = value
    path = d / "float.png"
    Image.fromarray(a, mode="F").save(path, format="TIFF")
    return path


def wide_png(d: Path, width: int, height: int) -> Path:
    return png(d, width, height, "1", "wide.png")


def symlink(d: Path, name: str, target: str | Path) -> Path:
    os.symlink(target, d / name)
    return d / name


def evaluate(model, data: str, d: Path, *extra) -> list:
    return ["eval", model, "--data", data, *extra]


def quantize_uncalibrated(model, d: Path) -> list:
    return ["quantize", model, "--out", d / "out" / "q.onnx"]


# ---------------------------------------------------------------- the verbs

def infer(f: Fixtures, model, d: Path, image=None, *extra) -> list:
    return ["infer", model, image or f.image, "--out-dir", d / "out", *extra]


def export(ck, d: Path) -> list:
    return ["export", ck, "--out", d / "out" / "x.onnx"]


def quantize(model, d: Path, *extra) -> list:
    return ["quantize", model, "--out", d / "out" / "q.onnx", "--calib-data", "synthetic", "--calib-images", "1", *extra]


DEEP = "[" * 100_000 + "]" * 100_000
CK = "edgeseg-checkpoint/1"

CASES: list[Case] = [
    # ONNX files that are not ONNX
    Case("onnx: truncated", lambda f, d: infer(f, _write(d / "t.onnx", f.onnx.read_bytes()[:3000]), d), ("t.onnx",)),
    Case("onnx: text file", lambda f, d: infer(f, _write(d / "r.onnx", b"# not a model\n"), d), ("r.onnx",)),
    Case("onnx: random bytes", lambda f, d: infer(f, _write(d / "x.onnx", np.random.default_rng(1).bytes(4096)), d), ("x.onnx",)),
    Case("onnx: empty file", lambda f, d: infer(f, _write(d / "e.onnx", b""), d), ("e.onnx",)),
    Case("onnx: foreign, no metadata or sidecar", lambda f, d: infer(f, _write(d / "f.onnx", f.foreign.read_bytes()), d),
         ("no edgeseg metadata",)),
    Case("onnx: external data linked to /dev/zero", lambda f, d: infer(f, external_data_link(f, d), d), ("external.onnx",)),
    Case("onnx: graph fails inside run", lambda f, d: infer(f, refuses_at_run(f, d), d), ("ONNX Runtime failed",)),
    Case("onnx: graph asks for 8 TB inside run", lambda f, d: infer(f, allocates_at_run(f, d), d), ("ONNX Runtime failed",)),
    # embedded metadata
    Case("meta: not JSON", lambda f, d: infer(f, onnx_with_props(f, d, std="[0.2,"), d), ("edgeseg.std",)),
    Case("meta: 2 MB class name", lambda f, d: infer(f, onnx_with_props(f, d, class_names=json.dumps(["x" * (2 << 20)])), d),
         ("class_names",)),
    Case("meta: 10^5-deep nesting", lambda f, d: infer(f, onnx_with_props(f, d, config=DEEP), d), ("edgeseg.config",)),
    Case("meta: 10^4-digit integer", lambda f, d: infer(f, onnx_with_props(f, d, size_divisor="9" * 10_000), d),
         ("edgeseg.size_divisor",)),
    Case("meta: std 0", lambda f, d: infer(f, onnx_with_props(f, d, std="[0.0]"), d), ("std",)),
    Case("meta: std NaN", lambda f, d: infer(f, onnx_with_props(f, d, std="[NaN]"), d), ("std",)),
    Case("meta: mean longer than in_channels", lambda f, d: infer(f, onnx_with_props(f, d, mean="[0.1, 0.2, 0.3]"), d), ("mean",)),
    Case("meta: mean of strings", lambda f, d: infer(f, onnx_with_props(f, d, mean='["a"]'), d), ("mean",)),
    Case("meta: size_divisor 0", lambda f, d: infer(f, onnx_with_props(f, d, size_divisor="0"), d), ("size_divisor",)),
    Case("meta: size_divisor 1e9", lambda f, d: infer(f, onnx_with_props(f, d, size_divisor="1000000000"), d), ("size_divisor",)),
    Case("meta: class_names empty", lambda f, d: infer(f, onnx_with_props(f, d, class_names="[]"), d), ("class_names",)),
    Case("meta: class_names numbers", lambda f, d: infer(f, onnx_with_props(f, d, class_names="[1, 2]"), d), ("class_names",)),
    Case("meta: 10^6 class names", lambda f, d: infer(f, onnx_with_props(f, d, class_names=json.dumps(["c"] * 10**6)), d),
         ("class_names",)),
    Case("meta: in_channels 10^9", lambda f, d: infer(f, onnx_with_props(f, d, in_channels="1000000000"), d), ("in_channels",)),
    Case("meta: ignore_index string", lambda f, d: infer(f, onnx_with_props(f, d, ignore_index='"x"'), d), ("ignore_index",)),
    Case("meta: unknown task", lambda f, d: infer(f, onnx_with_props(f, d, task='"detect"'), d), ("task",)),
    # sidecars of a foreign ONNX
    Case("sidecar: unknown key", lambda f, d: infer(f, foreign_with_sidecar(f, d, plugin_path="/tmp/x.so"), d), ("plugin_path",)),
    Case("sidecar: no model", lambda f, d: infer(f, foreign_with_sidecar(f, d, model=None), d), ("model",)),
    Case("sidecar: not JSON", lambda f, d: infer(f, foreign_with_sidecar(f, d, text="{model: x"), d), ("not valid JSON",)),
    Case("sidecar: a JSON list", lambda f, d: infer(f, foreign_with_sidecar(f, d, text="[1, 2]"), d), ("JSON object",)),
    Case("sidecar: deep nesting", lambda f, d: infer(f, foreign_with_sidecar(f, d, text=DEEP), d), ("not valid JSON",)),
    Case("sidecar: 2 MB", lambda f, d: infer(f, foreign_with_sidecar(f, d, text=" " * (2 << 20)), d), ("bytes",)),
    Case("sidecar: std 0", lambda f, d: infer(f, foreign_with_sidecar(f, d, std=[0]), d), ("std",)),
    Case("sidecar: std negative", lambda f, d: infer(f, foreign_with_sidecar(f, d, std=[-1.0]), d), ("std",)),
    Case("sidecar: mean wrong length", lambda f, d: infer(f, foreign_with_sidecar(f, d, mean=[0.1, 0.2]), d), ("mean",)),
    Case("sidecar: mean not a list", lambda f, d: infer(f, foreign_with_sidecar(f, d, mean=0.5), d), ("mean",)),
    Case("sidecar: size_divisor float", lambda f, d: infer(f, foreign_with_sidecar(f, d, size_divisor=1.5), d), ("size_divisor",)),
    Case("sidecar: size_divisor 4096", lambda f, d: infer(f, foreign_with_sidecar(f, d, size_divisor=4096), d), ("size_divisor",)),
    Case("sidecar: class_names empty", lambda f, d: infer(f, foreign_with_sidecar(f, d, class_names=[]), d), ("class_names",)),
    Case("sidecar: class_names a string", lambda f, d: infer(f, foreign_with_sidecar(f, d, class_names="ab"), d), ("class_names",)),
    Case("sidecar: in_channels 0", lambda f, d: infer(f, foreign_with_sidecar(f, d, in_channels=0), d), ("in_channels",)),
    Case("sidecar: in_channels true", lambda f, d: infer(f, foreign_with_sidecar(f, d, in_channels=True), d), ("in_channels",)),
    Case("sidecar: ignore_index float", lambda f, d: infer(f, foreign_with_sidecar(f, d, ignore_index=2.5), d), ("ignore_index",)),
    # checkpoints
    Case("checkpoint: random bytes", lambda f, d: export(_write(d / "w.pt", np.random.default_rng(2).bytes(256)), d),
         ("not a readable checkpoint",)),
    Case("checkpoint: pickle PROTO 0xc0 (torch warns)", lambda f, d: export(_write(d / "w.pt", b"\x80\xc0" + bytes(254)), d),
         ("not a readable checkpoint",)),
    Case("checkpoint: truncated", lambda f, d: export(truncated_zip_checkpoint(f, d), d), ("cut.pt",)),
    Case("checkpoint: zip bomb member", lambda f, d: export(zip_bomb_checkpoint(d), d), ("bomb.pt",)),
    Case("checkpoint: plain dict", lambda f, d: export(checkpoint(d, {"weights": [0.0, 1.0]}), d), ("not an edgeseg checkpoint",)),
    Case("checkpoint: pickle payload (legacy)", lambda f, d: export(pickle_payload(f, d, zipped=False), d), ("legacy_payload.pt",)),
    Case("checkpoint: pickle payload (zip)", lambda f, d: export(pickle_payload(f, d, zipped=True), d), ("zip_payload.pt",)),
    Case("checkpoint: no config", lambda f, d: export(checkpoint(d, good_payload(f, config=None)), d), ("config",)),
    Case("checkpoint: no meta", lambda f, d: export(checkpoint(d, good_payload(f, meta=None)), d), ("meta",)),
    Case("checkpoint: no state_dict", lambda f, d: export(checkpoint(d, good_payload(f, state_dict=None)), d), ("state_dict",)),
    Case("checkpoint: config a list", lambda f, d: export(checkpoint(d, good_payload(f, config=[1])), d), ("config",)),
    Case("checkpoint: no model name", lambda f, d: export(checkpoint(d, good_payload(f, config={"num_classes": 2})), d), ("name",)),
    Case("checkpoint: unknown model", lambda f, d: export(checkpoint(d, good_payload(f, config={"name": "resnet1000"})), d),
         ("resnet1000",)),
    Case("checkpoint: base_width 4096", lambda f, d: export(checkpoint(d, good_payload(
        f, config={"name": "unet_padded", "num_classes": 2, "in_channels": 1, "base_width": 4096})), d), ("base_width",)),
    Case("checkpoint: 2e9-value model in range", lambda f, d: export(checkpoint(d, good_payload(
        f, config={"name": "unet_padded", "num_classes": 2, "in_channels": 1, "base_width": 128, "depth": 6})), d),
         ("values",)),
    Case("checkpoint: num_classes 10^6", lambda f, d: export(checkpoint(d, good_payload(
        f, config={"name": "unet_padded", "num_classes": 10**6, "in_channels": 1})), d), ("num_classes",)),
    Case("checkpoint: state_dict of strings", lambda f, d: export(checkpoint(d, good_payload(f, state_dict={"w": "x"})), d),
         ("state_dict",)),
    Case("checkpoint: meta std 0", lambda f, d: export(checkpoint(d, good_payload(
        f, meta={"class_names": ["bg", "fg"], "in_channels": 1, "mean": [0.5], "std": [0.0]})), d), ("std",)),
    Case("checkpoint: meta unknown key", lambda f, d: export(checkpoint(d, good_payload(
        f, meta={"class_names": ["bg", "fg"], "in_channels": 1, "mean": [0.5], "std": [0.2], "run": "x"})), d), ("run",)),
    # images
    Case("image: garbage", lambda f, d: infer(f, f.onnx, d, _write(d / "scan.png", b"\x89PNG but then garbage")),
         ("not a readable image",)),
    Case("image: empty", lambda f, d: infer(f, f.onnx, d, _write(d / "empty.png", b"")), ("empty.png",)),
    Case("image: truncated", lambda f, d: infer(f, f.onnx, d, _write(d / "cut.png", f.image.read_bytes()[:200])), ("cut.png",)),
    Case("image: 12000x12000 1-bit", lambda f, d: infer(f, f.onnx, d, png(d, 12000, 12000)), ("pixels",)),
    Case("image: 30000x30000 1-bit", lambda f, d: infer(f, f.onnx, d, png(d, 30000, 30000)), ("pixels",)),
    Case("image: header claims 65535x65535", lambda f, d: infer(f, f.onnx, d, png_header_only(d, 65535, 65535)), ("pixels",)),
    Case("image: 5 MP over --max-pixels 1e6", lambda f, d: infer(f, f.onnx, d, png(d, 2500, 2000, "P"), "--max-pixels", "1000000"),
         ("pixels",)),
    # outputs
    Case("out: infer --out-dir under a file", lambda f, d: ["infer", f.onnx, f.image, "--out-dir", under_a_file(d, "out")],
         ("is a file",)),
    Case("out: export --out under a file", lambda f, d: ["export", f.checkpoint, "--out", under_a_file(d, "x.onnx")],
         ("is a file",)),
    Case("out: quantize --out under a file", lambda f, d: ["quantize", f.onnx, "--out", under_a_file(d, "q.onnx")],
         ("is a file",)),
    # the command line itself
    Case("cli: --max-pixels not a number", lambda f, d: infer(f, f.onnx, d, None, "--max-pixels", "lots"), ("--max-pixels",)),
    Case("cli: --max-pixels 0", lambda f, d: infer(f, f.onnx, d, None, "--max-pixels", "0"), ("pixel limit",)),
    Case("cli: unknown verb", lambda f, d: ["frobnicate", f.onnx], ("frobnicate",)),
    # the tensorrt flavour through ONNX Runtime's tools
    Case("quantize: int8 of a tensorrt-flavour graph", lambda f, d: quantize(f.tensorrt, d), ("tensorrt-flavour",)),
    # the plugin nodes' native ops (libedgeseg_ort.so), fed hostile fields and inputs by a crafted graph
    Case("plugin: stride 0", lambda f, d: infer(f, plugin_node_edited(f, d, {"stride": [0, 0]}), d), ("stride",)),
    Case("plugin: padding beyond the offset's size", lambda f, d: infer(f, plugin_node_edited(f, d, {"padding": [40, 40]}), d),
         ("offset",)),
    Case("plugin: padding 2^31", lambda f, d: infer(f, plugin_node_edited(f, d, {"padding": [2**31, 1]}), d), ("padding",)),
    Case("plugin: groups as a float", lambda f, d: infer(f, plugin_node_edited(f, d, {"groups": 1.5}), d), ("groups",)),
    Case("plugin: groups 3 of 1 channel", lambda f, d: infer(f, plugin_node_edited(f, d, {"groups": 3}), d), ("groups",)),
    Case("plugin: one-value dilation", lambda f, d: infer(f, plugin_node_edited(f, d, {"dilation": [1]}), d), ("dilation",)),
    Case("plugin: offset input left out", lambda f, d: infer(f, plugin_node_edited(f, d, inputs=_deform_inputs(f, 2)), d),
         ("left out",)),
    Case("quantize: truncated ONNX", lambda f, d: quantize(_write(d / "t.onnx", f.onnx.read_bytes()[:999]), d), ("t.onnx",)),
]


def _loop(d: Path) -> str:
    (d / "images").mkdir(parents=True, exist_ok=True)
    os.symlink("loop.png", d / "images" / "loop.png")
    return coco_json(d, images=[{"id": 1, "file_name": "loop.png", "width": 8, "height": 8}])


def _fifo(d: Path, name: str) -> Path:
    os.mkfifo(d / name)
    return d / name


def _sparse(d: Path, name: str, size: int) -> Path:
    with open(d / name, "wb") as f:
        f.truncate(size)
    return d / name


def _coco_at(d: Path, json_path: Path) -> str:
    tiny_png(d / "images" / "a.png")
    return f"coco:{d / 'images'},{json_path}"


def _coco_literal(d: Path, literal: str) -> str:
    """A COCO set whose polygon holds the raw JSON ``literal`` (NaN, 1e400: what Python's parser accepts)."""
    spec = coco_json(d)
    path = d / "instances.json"
    path.write_text(path.read_text().replace("[[1, 1, 6", f"[[1, 1, {literal}", 1))
    return spec


def _coco_linked_image(d: Path) -> str:
    spec = coco_json(d, images=[{"id": 1, "file_name": "z.png", "width": 8, "height": 8}])
    symlink(d / "images", "z.png", "/dev/zero")
    return spec


def _folder_mask(d: Path, target: Path) -> str:
    """A folder set whose one mask is a link to ``target``."""
    spec = folder_set(d)
    (d / "set" / "masks" / "0.png").unlink()
    symlink(d / "set" / "masks", "0.png", target)
    return spec


def _rle(counts) -> dict:
    return {"id": 1, "image_id": 1, "category_id": 1, "segmentation": {"size": [8, 8], "counts": counts}}


SEMANTIC_META = {"class_names": ["bg", "fg"], "in_channels": 1, "mean": [0.5], "std": [0.25]}
TRI = [1, 1, 6, 1, 1, 6]

# Round two (issue 20): data sets and model files that decide what is read, allocated and written.
CASES += [
    # COCO instances JSON: budgets before pycocotools (which crashes on unchecked allocations) and before json.loads
    Case("coco: 150,000-point polygon", lambda f, d: evaluate(f.onnx, coco_json(d, [polygon_ann(1, zigzag(150_000, 8, 8))]), d),
         ("polygon", "EDGESEG_MAX_POLYGON_POINTS")),
    Case("coco: 20,000 image-wide edges on 4000²", lambda f, d: evaluate(f.onnx, coco_json(
        d, [polygon_ann(1, zigzag(20_000, 4000, 4000))], size=(4000, 4000)), d), ("rasterising",)),
    Case("coco: 600 polygons on one 4000² image", lambda f, d: evaluate(f.onnx, coco_json(
        d, [polygon_ann(i, [10, 10, 3000, 10, 10, 3000]) for i in range(600)], size=(4000, 4000)), d), ("decoded masks",)),
    Case("coco: 20,000 annotations on one image", lambda f, d: evaluate(f.onnx, coco_json(
        d, [polygon_ann(i, TRI) for i in range(20_000)]), d), ("annotations",)),
    Case("coco: RLE of 2·10^6 runs", lambda f, d: evaluate(f.onnx, coco_json(d, [_rle([0] * 2_000_000)]), d), ("RLE",)),
    Case("coco: compressed RLE of 2·10^6 characters", lambda f, d: evaluate(f.onnx, coco_json(d, [_rle("0" * 2_000_000)]), d),
         ("RLE",)),
    Case("coco: RLE runs not covering the image", lambda f, d: evaluate(f.onnx, coco_json(d, [_rle([3, 5])]), d), ("RLE",)),
    Case("coco: image record 10^5×10^5", lambda f, d: evaluate(f.onnx, coco_json(
        d, images=[{"id": 1, "file_name": "a.png", "width": 100_000, "height": 100_000}]), d), ("memory", "--max-bytes")),
    Case("coco: 40 records of a 3000² image", lambda f, d: evaluate(f.onnx, coco_json(
        d, [], images=[{"id": i, "file_name": "a.png", "width": 3000, "height": 3000} for i in range(40)],
        size=(3000, 3000)), d), ("--max-bytes",)),
    Case("coco: 200,000 image records", lambda f, d: evaluate(f.onnx, coco_json(
        d, [], images=[{"id": i, "file_name": "a.png", "width": 8, "height": 8} for i in range(200_000)]), d), ("images",)),
    Case("coco: 10^5-digit width", lambda f, d: evaluate(f.onnx, coco_json(
        d, text='{"images": [{"id": 1, "file_name": "a.png", "width": ' + "9" * 100_000 + "}]}"), d), ("number",)),
    Case("coco: 10^5-deep nesting", lambda f, d: evaluate(f.onnx, coco_json(d, text=DEEP), d), ("nesting",)),
    Case("coco: 40-deep nesting in a field", lambda f, d: evaluate(f.onnx, coco_json(
        d, text='{"images": [], "extra": ' + "[" * 40 + "]" * 40 + "}"), d), ("nesting",)),
    Case("coco: number 1e400 in a polygon", lambda f, d: evaluate(f.onnx, _coco_literal(d, "1e400"), d), ("non-finite",)),
    Case("coco: NaN in a polygon", lambda f, d: evaluate(f.onnx, _coco_literal(d, "NaN"), d), ("non-finite",)),
    Case("coco: polygon far outside its image", lambda f, d: evaluate(f.onnx, coco_json(
        d, [polygon_ann(1, [0, 0, 1e6, 0, 0, 1e6])]), d), ("far outside",)),
    Case("coco: JSON not UTF-8", lambda f, d: evaluate(f.onnx, coco_json(d, text=b'{"images": "\xff\xfe"}'), d),
         ("not valid JSON",)),
    Case("coco: JSON is a 1 TB sparse file", lambda f, d: evaluate(f.onnx, _coco_at(d, _sparse(d, "huge.json", 1 << 40)), d),
         ("EDGESEG_MAX_JSON_BYTES",)),
    Case("coco: JSON links to /dev/zero", lambda f, d: evaluate(f.onnx, _coco_at(d, symlink(d, "z.json", "/dev/zero")), d),
         ("not a regular file",)),
    Case("coco: JSON is a FIFO", lambda f, d: evaluate(f.onnx, _coco_at(d, _fifo(d, "fifo.json")), d),
         ("not a regular file",)),
    Case("coco: file_name of 5000 characters", lambda f, d: evaluate(f.onnx, coco_json(
        d, images=[{"id": 1, "file_name": "a" * 5000, "width": 8, "height": 8}]), d), ("file_name",)),
    Case("coco: file_name holding a NUL", lambda f, d: evaluate(f.onnx, coco_json(
        d, images=[{"id": 1, "file_name": "a.png\x00x", "width": 8, "height": 8}]), d), ("NUL",)),
    Case("coco: file_name a symlink loop", lambda f, d: evaluate(f.onnx, _loop(d), d), ("loop",)),
    Case("coco: file_name outside the folder", lambda f, d: evaluate(f.onnx, coco_json(
        d, images=[{"id": 1, "file_name": "../instances.json", "width": 8, "height": 8}]), d), ("outside",)),
    Case("coco: file_name linked to /dev/zero", lambda f, d: evaluate(f.onnx, _coco_linked_image(d), d), ("outside",)),
    Case("coco: 300 categories", lambda f, d: evaluate(f.onnx, coco_json(
        d, categories=[{"id": i, "name": f"c{i}"} for i in range(1, 301)]), d), ("categories",)),
    # COCO panoptic
    Case("panoptic: 20,000 segments on one image", lambda f, d: evaluate(f.onnx, panoptic_json(
        d, [{"id": i, "category_id": 1} for i in range(1, 20_001)]), d), ("segments",)),
    Case("panoptic: image record 10^5×10^5", lambda f, d: evaluate(f.onnx, panoptic_json(
        d, images=[{"id": 1, "file_name": "a.png", "width": 100_000, "height": 100_000}]), d), ("--max-bytes",)),
    Case("panoptic: 10^5-deep nesting", lambda f, d: evaluate(f.onnx, panoptic_json(d, text=DEEP), d), ("nesting",)),
    Case("panoptic: 10^5-digit segment id", lambda f, d: evaluate(f.onnx, panoptic_json(
        d, text='{"annotations": [{"segments_info": [{"id": ' + "7" * 100_000 + "}]}]}"), d), ("number",)),
    Case("panoptic: PNG outside its folder", lambda f, d: evaluate(f.onnx, panoptic_json(d, png_name="../panoptic.json"), d),
         ("outside",)),
    Case("panoptic: segment id 2^24", lambda f, d: evaluate(f.onnx, panoptic_json(d, [{"id": 1 << 24, "category_id": 1}]), d),
         ("segment",)),
    # folder data sets: budgets from the headers, before decoding
    Case("folder: 1-bit 9999² image and mask", lambda f, d: evaluate(f.onnx, folder_set(d, (9999, 9999), image_mode="1"), d),
         ("--max-bytes",)),
    Case("folder: 60 masks of 3000²", lambda f, d: evaluate(f.onnx, folder_set(d, (3000, 3000), 60, image_mode="1"), d),
         ("--max-bytes",)),
    Case("folder: mask header claims 65535²", lambda f, d: evaluate(f.onnx, _folder_mask(d, png_header_only(d, 65535, 65535)), d),
         ("pixels",)),
    Case("folder: mask over --max-bytes 1000", lambda f, d: evaluate(f.onnx, folder_set(d, (64, 64)), d, "--max-bytes", "1000"),
         ("--max-bytes",)),
    Case("folder: mask class 7 of 2 classes", lambda f, d: evaluate(f.onnx, folder_set(d, mode="L", mask_value=7), d),
         ("class index 7",)),
    Case("folder: mask classes beyond the model's", lambda f, d: evaluate(rgb_checkpoint(d), folder_set(
        d, mode="L", mask_value=2, classes=3), d), ("class index 2", "2 classes")),
    Case("folder: RGB mask", lambda f, d: evaluate(f.onnx, folder_set(d, mode="RGB"), d), ("mode RGB",)),
    Case("folder: mask linked to /dev/zero", lambda f, d: evaluate(f.onnx, _folder_mask(d, Path("/dev/zero")), d),
         ("no mask",)),
    # images: a defined result or one refusal for every mode, memory budgets before decoding and before the run
    Case("image: 1-bit 9999²", lambda f, d: infer(f, f.onnx, d, png(d, 9999, 9999)), ("--max-bytes",)),
    Case("image: 6000² through the model", lambda f, d: infer(f, f.onnx, d, png(d, 6000, 6000)), ("model", "--max-bytes")),
    Case("image: 100000×1 padded to size_divisor 1024", lambda f, d: infer(
        f, foreign_with_sidecar(f, d, size_divisor=1024), d, wide_png(d, 100_000, 1)), ("--max-bytes",)),
    Case("image: 1×1 resized to input_size 8192²", lambda f, d: infer(
        f, foreign_with_sidecar(f, d, input_size=[8192, 8192]), d, png(d, 1, 1, "L")), ("8192×8192",)),
    Case("image: float TIFF .png with NaN", lambda f, d: infer(f, f.onnx, d, float_tiff(d, float("nan"))), ("NaN",)),
    Case("image: float TIFF .png with inf", lambda f, d: infer(f, f.onnx, d, float_tiff(d, float("inf"))), ("infinite",)),
    Case("image: over --max-bytes 1000", lambda f, d: infer(f, f.onnx, d, None, "--max-bytes", "1000"), ("--max-bytes",)),
    Case("cli: --max-bytes 0", lambda f, d: infer(f, f.onnx, d, None, "--max-bytes", "0"), ("--max-bytes",)),
    # normalisation values finite in the graph's input precision
    Case("meta: std 1e-300", lambda f, d: infer(f, onnx_with_props(f, d, std="[1e-300]"), d), ("overflow",)),
    Case("meta: mean 1e308", lambda f, d: infer(f, onnx_with_props(f, d, mean="[1e308]"), d), ("overflow",)),
    Case("sidecar: std 1e-40 (float32 denormal)", lambda f, d: infer(f, foreign_with_sidecar(f, d, std=[1e-40]), d),
         ("overflow",)),
    Case("sidecar: mean 3e38", lambda f, d: infer(f, foreign_with_sidecar(f, d, mean=[3e38]), d), ("overflow",)),
    Case("checkpoint: meta std 1e-45", lambda f, d: export(checkpoint(d, good_payload(
        f, meta={**SEMANTIC_META, "std": [1e-45]})), d), ("overflow",)),
    # the task against the graph's outputs
    Case("meta: task instance on a semantic graph", lambda f, d: infer(f, onnx_with_props(f, d, task='"instance"', max_detections="100"), d),
         ("num_detections",)),
    Case("meta: task panoptic on a semantic graph", lambda f, d: infer(f, onnx_with_props(f, d, task='"panoptic"'), d),
         ("segments",)),
    Case("sidecar: task instance", lambda f, d: infer(f, foreign_with_sidecar(f, d, task="instance", max_detections=100), d), ("task",)),
    Case("checkpoint: task instance of a U-Net", lambda f, d: export(checkpoint(d, good_payload(
        f, meta={**SEMANTIC_META, "task": "instance", "max_detections": 100})), d), ("task",)),
    # dataset_args from a model file: type, range and size
    Case("dataset_args: 10^7 synthetic images", lambda f, d: evaluate(with_dataset(
        f, d, "synthetic", {"num_images": 10**7}), "synthetic", d), ("num_images",)),
    Case("dataset_args: 50,000 synthetic 512² images", lambda f, d: evaluate(with_dataset(
        f, d, "synthetic", {"num_images": 50_000, "size": [512, 512]}), "synthetic", d), ("--max-bytes",)),
    Case("dataset_args: num_images a string", lambda f, d: evaluate(with_dataset(
        f, d, "synthetic", {"num_images": "many"}), "synthetic", d), ("num_images",)),
    Case("dataset_args: size 10^9", lambda f, d: evaluate(with_dataset(
        f, d, "synthetic", {"size": [10**9, 10**9]}), "synthetic", d), ("size",)),
    Case("dataset_args: num_classes -1", lambda f, d: evaluate(with_dataset(
        f, d, "synthetic", {"num_classes": -1}), "synthetic", d), ("num_classes",)),
    Case("dataset_args: a list", lambda f, d: evaluate(with_dataset(f, d, "synthetic", [1, 2]), "synthetic", d), ("mapping",)),
    Case("dataset_args: unknown key root=/etc", lambda f, d: evaluate(with_dataset(
        f, d, "synthetic", {"root": "/etc"}), "synthetic", d), ("root",)),
    Case("dataset_args: lits context 10^6", lambda f, d: evaluate(with_dataset(
        f, d, "lits", {"context": 10**6}), "lits", d), ("context",)),
    # model files never choose what is read
    Case("quantize: config.dataset a system folder", lambda f, d: quantize_uncalibrated(
        onnx_with_props(f, d, config=json.dumps({"dataset": "/etc"})), d), ("--calib-data",)),
    Case("quantize: config.dataset folder:/", lambda f, d: quantize_uncalibrated(
        onnx_with_props(f, d, config=json.dumps({"dataset": "folder:/"})), d), ("--calib-data",)),
    Case("quantize: config.dataset coco on /dev/zero", lambda f, d: quantize_uncalibrated(
        onnx_with_props(f, d, config=json.dumps({"dataset": "coco:/dev,/dev/zero"})), d), ("--calib-data",)),
    Case("quantize: config.dataset a number", lambda f, d: quantize_uncalibrated(
        onnx_with_props(f, d, config=json.dumps({"dataset": 7})), d), ("--calib-data",)),
    # outputs: plain names inside the folder the user named
    Case("out: triton --name ..", lambda f, d: ["triton", f.onnx, "--repo", d / "out" / "repo", "--name", ".."], ("name",)),
    Case("out: triton --name .", lambda f, d: ["triton", f.onnx, "--repo", d / "out" / "repo", "--name", "."], ("name",)),
    Case("out: triton --name a/b", lambda f, d: ["triton", f.onnx, "--repo", d / "out" / "repo", "--name", "a/b"], ("name",)),
    Case("out: triton --name .hidden", lambda f, d: ["triton", f.onnx, "--repo", d / "out" / "repo", "--name", ".h"],
         ("name",)),
    Case("out: triton --name with a newline", lambda f, d: ["triton", f.onnx, "--repo", d / "out" / "repo", "--name", "m\n"],
         ("name",)),
    Case("out: bench --name ../x", lambda f, d: ["bench", f.onnx, "--out", d / "out", "--name", "../x"], ("--name",)),
]


# ---------------------------------------------------------------- running

# The child: ``python -c _CHILD <hwm file> <verb> <args>`` runs ``edgeseg <verb> <args>`` and, at exit, writes
# its peak resident memory (VmHWM: of this process image only, unlike ru_maxrss, which also counts what a
# forked child shared with its parent before exec) into <hwm file>.
_PEAK = """
def _status_kib(key):
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) for l in status if l.startswith(key + ":"))
def _peak(path, offset_kib=0):
    with open(path, "w") as out:
        out.write(str((_status_kib("VmHWM") + offset_kib) * 1024))
"""
_CHILD = _PEAK + """
import atexit, runpy, sys
atexit.register(_peak, sys.argv[1])
sys.argv = ["edgeseg"] + sys.argv[2:]
runpy.run_module("edgeseg", run_name="__main__", alter_sys=True)
"""

# The fork server: one ``python -c`` that imports what every verb imports (torch, ONNX Runtime, edgeseg: ~3 s
# of each case's ~4 s on 2 cores), then forks one child per case. The child is what ``_CHILD`` would be after
# its imports: same interpreter flags, environment, sys.path and argv, its own cwd and stdio, and it ends as a
# fresh interpreter does (uncaught exception: traceback and status 1; atexit handlers; buffers flushed). What a
# fork cannot show, a message printed while importing, the server refuses to start on (``_ForkServer``). Its peak
# memory is counted as a fresh child's would be: a fork maps only part of the server's pages (shared libraries are
# faulted in again), so the child reports the server's peak plus what it grew beyond its own start (on ten cases:
# 711-776 MB in fresh children; 409-479 MB a forked child's own VmHWM, 720-790 MB counted so; never less).
# Requests and replies are JSON lines on the server's stdin and on a duplicate of its stdout.
_SERVER = _PEAK + """
import json, os, sys
reply = os.dup(1)
devnull = os.open(os.devnull, os.O_RDWR)
os.dup2(devnull, 1)
import atexit, runpy, signal, time
import edgeseg.cli, edgeseg.bench, edgeseg.evaluate, edgeseg.quant, edgeseg.parity, edgeseg.models.checkpoint
sys.stderr.flush()
# torch and ONNX Runtime start idle native threads at import; they keep fork safe (atfork handlers), as
# DataLoader workers rely on. A Python thread here would not be: the server starts none.
import threading
server_hwm = _status_kib("VmHWM")
os.write(reply, (json.dumps({"ready": True, "threads": threading.active_count()}) + "\\n").encode())
for line in sys.stdin:
    req = json.loads(line)
    sys.stdout.flush(); sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        start = _status_kib("VmRSS")
        os.close(reply)
        os.chdir(req["cwd"])
        err = os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(devnull, 0), os.dup2(devnull, 1), os.dup2(err, 2)
        os.close(err), os.close(devnull)
        atexit.register(_peak, req["hwm"], server_hwm - start)
        sys.argv = ["edgeseg"] + req["argv"]
        runpy.run_module("edgeseg", run_name="__main__", alter_sys=True)
        sys.exit(0)
    deadline, killed = time.monotonic() + req["limit"], False
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if not killed and time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            killed = True
        time.sleep(0.02)
    os.write(reply, (json.dumps({"status": status, "maxrss_kib": usage.ru_maxrss, "killed": killed}) + "\\n").encode())
"""


class _ForkServer:
    """A ``_SERVER`` process: ``run`` one case at a time through it."""

    def __init__(self, env: dict, work: Path):
        self.log = work / f"server-{id(self)}.stderr"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-c", _SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=log, env=env, cwd=work, text=True, bufsize=1)
        ready = json.loads(self.proc.stdout.readline() or "{}")
        said = self.log.read_text(errors="replace")
        if not ready.get("ready") or said or ready.get("threads") != 1:
            self.close()
            raise RuntimeError(f"hostile corpus: the fork server did not start clean ({ready}); importing edgeseg "
                               f"printed: {said!r} -- a fresh process would print it in every case")

    def run(self, argv: list[str], cwd: Path, stderr: Path, hwm: Path) -> tuple[int, int, bool]:
        """(os.wait4 status, ru_maxrss in KiB, killed at the time limit) of one child."""
        self.proc.stdin.write(json.dumps({"argv": argv, "cwd": str(cwd), "stderr": str(stderr), "hwm": str(hwm),
                                          "limit": TIME_LIMIT_S}) + "\n")
        reply = self.proc.stdout.readline()
        if not reply:
            raise RuntimeError(f"hostile corpus: the fork server died: {self.log.read_text(errors='replace')[-2000:]}")
        r = json.loads(reply)
        return r["status"], r["maxrss_kib"], r["killed"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def _snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _child_env() -> dict:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    env.pop("EDGESEG_MAX_PIXELS", None)
    return env


def run_case(case: Case, fixtures: Fixtures, work: Path, server: _ForkServer | None = None) -> Result:
    """Build the case's files in their own folder under ``work``, run the verb (in a fresh interpreter, or forked
    from ``server``), judge what it left."""
    d = work / "".join(c if c.isalnum() else "_" for c in case.name)
    d.mkdir(parents=True)
    argv = [str(a) for a in case.args(fixtures, d)]
    before = _snapshot(d)
    err_path, hwm = work / (d.name + ".stderr"), work / (d.name + ".hwm")
    start = time.monotonic()
    if server is not None:
        status, maxrss_kib, killed = server.run(argv, d, err_path, hwm)
    else:
        with open(err_path, "wb") as err:
            proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(hwm), *argv], stdout=subprocess.DEVNULL,
                                    stderr=err, cwd=d, env=_child_env())
            timeout = threading.Event()

            def kill() -> None:
                timeout.set()
                proc.kill()

            timer = threading.Timer(TIME_LIMIT_S, kill)
            timer.start()
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            finally:
                timer.cancel()
        maxrss_kib, killed = usage.ru_maxrss, timeout.is_set()
    returncode = os.waitstatus_to_exitcode(status)
    new = sorted(_snapshot(d) - before)
    # The child's own high-water mark; where it could not say (killed), its rusage, which also counts the
    # memory it shared with its parent (an over-estimate, never an under-estimate). A forked child's high-water
    # mark starts at the server's (the imports a fresh child makes too).
    peak = int(hwm.read_text()) if hwm.is_file() else maxrss_kib * 1024
    return Result(case.name, returncode, err_path.read_text(errors="replace"), time.monotonic() - start,
                  peak, killed, new, (work / MARKER).exists())


def run_corpus(work: Path, cases: list[Case] | None = None, workers: int = 2, fork: bool = False) -> list[Result]:
    """Every case (in ``workers`` parallel children), in the order of ``cases``. ``fork``: each child forked from
    a server that has made the imports already (the tests: ~3 s less a case), not a fresh interpreter."""
    import queue
    from concurrent.futures import ThreadPoolExecutor

    cases = CASES if cases is None else cases
    fixtures = Fixtures(work / "fixtures")
    servers: queue.Queue = queue.Queue()
    started = []
    try:
        if fork:
            for _ in range(workers):
                started.append(_ForkServer(_child_env(), work))
                servers.put(started[-1])

        def one(case: Case) -> Result:
            if not fork:
                return run_case(case, fixtures, work)
            server = servers.get()  # one case at a time per server
            try:
                return run_case(case, fixtures, work, server)
            finally:
                servers.put(server)

        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(one, cases))
    finally:
        for server in started:
            server.close()


@dataclass
class Summary:
    cases: int = 0
    crashes: int = 0
    tracebacks: int = 0
    silent: int = 0
    failing: dict[str, list[str]] = field(default_factory=dict)
    peak_rss_bytes: int = 0
    peak_case: str = ""


def summarize(results: list[Result]) -> Summary:
    by_name = {c.name: c for c in CASES}
    s = Summary(cases=len(results))
    for r in results:
        s.crashes += r.crashed
        s.tracebacks += r.traceback
        s.silent += r.silent
        problems = r.problems(by_name[r.case])
        if problems:
            s.failing[r.case] = problems
        if r.max_rss_bytes > s.peak_rss_bytes:
            s.peak_rss_bytes, s.peak_case = r.max_rss_bytes, r.case
    return s
