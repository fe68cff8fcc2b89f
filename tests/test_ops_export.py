"""Each custom op in a small model, exported in both flavours and run in ONNX Runtime against PyTorch:
portable in stock ONNX Runtime, tensorrt (plugin nodes written by the surgery passes) through the
custom-op library built on the same math core as the TensorRT plugins."""
import numpy as np
import onnx
import pytest
import torch
from torch import nn

from edgeseg import ops
from edgeseg.export import ModelMeta, export_onnx
from edgeseg.export.plugins import PLUGIN_FIELDS, plugin_nodes
from edgeseg.ops.native import plugin_dir
from edgeseg.runtime import open_session

ORT_LIB = plugin_dir() / "libedgeseg_ort.so"


class RoIAlignNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("rois", torch.tensor([[0, 1.3, 2.2, 30.5, 24.1], [0, -5, -3, 60, 70], [0, 5, 5, 5, 5],
                                                   [0, 20, 9, 4, 3], [0, 8, 8, 40, 40]]))

    def forward(self, x):
        return {"pooled": ops.roi_align(x, self.rois, (4, 3), 0.5, 2, True),
                "adaptive": ops.roi_align(x, self.rois, 5, 0.5, -1, False)}


class MultilevelNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("rois", torch.tensor([[0, 1.0, 2.0, 20.0, 24.0], [0, 0, 0, 120, 110], [0, 10, 10, 70, 50],
                                                   [0, 3, 3, 9, 9]]))

    def forward(self, x):
        feats = [nn.functional.avg_pool2d(x, s) for s in (4, 8, 16, 32)]
        return {"pooled": ops.multilevel_roi_align(feats, self.rois, 7, [1 / 4, 1 / 8, 1 / 16, 1 / 32], 2)}


class DeformNet(nn.Module):
    def __init__(self, with_mask=True):
        super().__init__()
        self.with_mask = with_mask
        self.offset = nn.Conv2d(4, 2 * 2 * 9 + 2 * 9, 3, padding=1)
        nn.init.normal_(self.offset.weight, std=0.3)
        # Cout = Cin = 4 (groups 2): the output has one channel per class the test metadata names.
        self.weight = nn.Parameter(torch.randn(4, 2, 3, 3))
        self.bias = nn.Parameter(torch.randn(4))

    def forward(self, x):
        o = self.offset(x)
        offset, mask = o[:, :36], o[:, 36:].sigmoid()
        y = ops.deform_conv2d(x, offset, self.weight, self.bias if self.with_mask else None, 1, 1, 1,
                              mask if self.with_mask else None)
        return {"features": y}


class DCNv3Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = ops.DCNv3(8, kernel_size=3, group=2)
        nn.init.normal_(self.block.offset.weight, std=0.5)  # non-trivial offsets and modulation
        nn.init.normal_(self.block.mask.weight, std=0.5)

    def forward(self, x):
        return {"features": self.block(x)}


class PasteNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("boxes", torch.tensor([[3.2, 4.1, 25.7, 19.9], [-5.0, -5.0, 10.0, 12.0], [10, 10, 8, 30.0]]))
        self.logits = nn.Parameter(torch.randn(3, 7, 7))

    def forward(self, x):
        masks = (self.logits * x.mean()).sigmoid()  # R×M×M from a fixed-size head (x only scales it)
        return {"masks": ops.paste_masks(masks, self.boxes, x, threshold=-1)}


class PanopticNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("scores", torch.tensor([0.9, 0.3, 0.8, 0.95]))
        self.register_buffer("classes", torch.tensor([0, 1, 1, 0]))

    def forward(self, x):
        semantic = x[0].argmax(0)
        masks = (x[0, :4] > 0.3).float()
        ids, table = ops.panoptic_paste(semantic, masks, self.scores, self.classes, num_classes=5, num_thing_classes=2,
                                        overlap_threshold=0.5, min_stuff_area=20, score_threshold=0.5)
        return {"panoptic": ids, "segments": table}


CASES = {  # name: (model, channels, sizes, plugin ops in the tensorrt flavour)
    "roi_align": (RoIAlignNet, 3, [(32, 40), (48, 36)], ["EdgeSegRoIAlign"] * 2),
    "multilevel_roi_align": (MultilevelNet, 3, [(128, 128), (160, 128)], ["EdgeSegMultilevelRoIAlign"]),
    "deform_conv2d": (DeformNet, 4, [(12, 14), (9, 17)], ["EdgeSegDeformConv2d"]),
    "dcnv3": (DCNv3Net, 8, [(10, 12), (7, 9)], ["EdgeSegDCNv3"]),
    "paste_masks": (PasteNet, 3, [(24, 30), (40, 20)], ["EdgeSegPasteMasks"]),
    "panoptic_paste": (PanopticNet, 5, [(24, 30), (20, 36)], ["EdgeSegPanopticPaste"]),
}


def _meta(channels):
    return ModelMeta(model="op-test", class_names=[f"c{i}" for i in range(channels)], in_channels=channels,
                     mean=[0.0] * channels, std=[1.0] * channels, size_divisor=1)


@pytest.mark.parametrize("flavour", ["portable", "tensorrt"])
@pytest.mark.parametrize("case", list(CASES))
def test_op_exports_and_matches_pytorch_in_onnxruntime(tmp_path, case, flavour):
    if flavour == "tensorrt" and not ORT_LIB.is_file():
        pytest.skip(f"{ORT_LIB} not built (scripts/build_plugins.sh could not fetch ONNX Runtime's headers)")
    build, channels, sizes, plugin_ops = CASES[case]
    torch.manual_seed(1)
    model = build().eval()
    path = tmp_path / f"{case}_{flavour}.onnx"
    export_onnx(model, path, meta=_meta(channels), sample=torch.randn(1, channels, *sizes[0]), flavour=flavour)
    proto = onnx.load(str(path))
    assert sorted(plugin_nodes(proto)) == (sorted(plugin_ops) if flavour == "tensorrt" else [])
    if flavour == "tensorrt":
        for node in proto.graph.node:
            if node.domain == "edgeseg":
                attrs = {a.name for a in node.attribute}
                assert attrs - {"plugin_version", "plugin_namespace"} <= set(PLUGIN_FIELDS[node.op_type])
                assert {"plugin_version", "plugin_namespace"} <= attrs
    session = open_session(path)
    for size in sizes:  # the traced size and another: dynamic H/W
        x = torch.randn(1, channels, *size)
        with torch.no_grad():
            ref = model(x)
        got = session.run(x.numpy())
        for name, expected in ref.items():
            np.testing.assert_allclose(got[name], expected.float().numpy(), atol=1e-4, rtol=1e-4, err_msg=f"{case} {name} {size}")


def test_deform_conv_without_mask_or_bias_becomes_a_plugin_with_empty_inputs(tmp_path):
    if not ORT_LIB.is_file():
        pytest.skip(f"{ORT_LIB} not built")
    model = DeformNet(with_mask=False).eval()
    path = tmp_path / "dcn.onnx"
    export_onnx(model, path, meta=_meta(4), sample=torch.randn(1, 4, 12, 14), flavour="tensorrt")
    x = torch.randn(1, 4, 12, 14)
    np.testing.assert_allclose(open_session(path).run(x.numpy())["features"], model(x)["features"].detach().numpy(),
                               atol=1e-4, rtol=1e-4)


def test_unknown_flavour_is_refused(tmp_path):
    from edgeseg.errors import ExportError

    with pytest.raises(ExportError, match="unknown flavour"):
        export_onnx(DCNv3Net(), tmp_path / "x.onnx", meta=_meta(8), flavour="tflite")


def test_a_missing_plugin_library_is_a_clear_error(tmp_path, monkeypatch):
    """A tensorrt-flavour graph, or impl="native", without the built libraries says what to build."""
    from edgeseg.errors import BackendError
    from edgeseg.ops import native

    if not ORT_LIB.is_file():
        pytest.skip(f"{ORT_LIB} not built")
    path = tmp_path / "dcnv3.onnx"
    export_onnx(DCNv3Net().eval(), path, meta=_meta(8), sample=torch.randn(1, 8, 6, 6), flavour="tensorrt")
    monkeypatch.setenv("EDGESEG_PLUGIN_DIR", str(tmp_path / "nowhere"))
    native._lib.cache_clear()
    with pytest.raises(BackendError, match="scripts/build_plugins.sh"):
        open_session(path)
    with pytest.raises(BackendError, match="libedgeseg_cpu.so is missing"):
        ops.roi_align(torch.randn(1, 1, 4, 4), torch.tensor([[0.0, 0, 0, 2, 2]]), 2, impl="native")
    monkeypatch.undo()
    native._lib.cache_clear()
