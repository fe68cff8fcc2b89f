"""InternImage (DCNv3 stages): the backbone's multi-scale features, the paper's -T configuration, the small
DeepLabV3+ InternImage exported in both flavours (ONNX Runtime against PyTorch) and trained, and InternImage as
LPSNet's backbone (C2–C5, -T built and run, the CPU configuration exported in both flavours)."""
import onnx
import pytest
import torch

import edgeseg
from edgeseg.export.plugins import plugin_nodes
from edgeseg.models import count_parameters, create
from edgeseg.models.backbones import INTERNIMAGE_CONFIGS, internimage, internimage_cpu, internimage_t
from edgeseg.models.backbones.internimage import InternImage, InternImageConfig
from edgeseg.ops.native import plugin_dir
from edgeseg.train import TrainConfig, train

ORT_LIB = plugin_dir() / "libedgeseg_ort.so"


def test_backbone_features_at_strides_4_to_32():
    model = internimage_cpu(in_channels=1).eval()
    c = INTERNIMAGE_CONFIGS["cpu"].channels
    with torch.no_grad():
        feats = model(torch.randn(2, 1, 64, 96))
    assert model.strides == [4, 8, 16, 32] and model.out_channels == [c, 2 * c, 4 * c, 8 * c]
    assert [tuple(f.shape) for f in feats] == [(2, c << i, 64 // s, 96 // s) for i, s in enumerate((4, 8, 16, 32))]
    # DeepLab's output strides: the last downsamplings become stride 1, the later DCNv3 grids dilate
    for os_, strides in ((16, [4, 8, 16, 16]), (8, [4, 8, 8, 8])):
        m = internimage_cpu(output_stride=os_).eval()
        assert m.strides == strides
        with torch.no_grad():
            assert [f.shape[-1] for f in m(torch.randn(1, 3, 64, 64))] == [64 // s for s in strides]
    assert m.stages[3].blocks[0].dcn.dilation == 4 and m.stages[2].blocks[0].dcn.dilation == 2


def test_internimage_t_is_the_papers_origin_model():
    cfg = INTERNIMAGE_CONFIGS["t"]
    assert (cfg.channels, cfg.depths, cfg.groups, cfg.mlp_ratio) == (64, (4, 4, 18, 4), (4, 8, 16, 32), 4.0)
    assert all((cfg.channels << i) // g == 16 for i, g in enumerate(cfg.groups))  # C' = 16 channels per group
    with torch.device("meta"):
        model = internimage_t()
    # The paper's 30M counts its classifier (~1.2M) too; the backbone alone is 28.8M.
    assert count_parameters(model) / 1e6 == pytest.approx(28.75, rel=0.01)
    assert sum(len(s.blocks) for s in model.stages) == 30


def test_block_options_post_norm_layer_scale_and_drop_path():
    cfg = InternImageConfig(16, (1, 1, 1, 1), (1, 2, 4, 8), drop_path=0.5, layer_scale=1e-5, post_norm=True)
    model = InternImage(cfg)
    assert torch.equal(model.stages[0].blocks[0].gamma1, torch.full((16,), 1e-5))
    assert isinstance(model.stages[0].norm, torch.nn.Identity)  # post-norm stages end on their blocks' norms
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        a, b = model(x)[-1], model(x)[-1]
    assert torch.equal(a, b)  # drop path is off at inference
    model.train()
    sum(f.sum() for f in model(x)).backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="groups"):
        InternImage(InternImageConfig(16, (1, 1, 1, 1), (3, 2, 4, 8)))
    with pytest.raises(ValueError, match="configuration"):
        internimage("xl")


@pytest.mark.parametrize("flavour", ["portable", "tensorrt"])
def test_deeplabv3plus_internimage_exports_and_matches_pytorch(tmp_path, flavour):
    if flavour == "tensorrt" and not ORT_LIB.is_file():
        pytest.skip("libedgeseg_ort.so not built (scripts/build_plugins.sh could not fetch ONNX Runtime's headers)")
    model = create("deeplabv3plus_internimage_cpu", num_classes=3).eval()
    # Non-trivial sampling: untrained offsets are zero and the modulation uniform.
    for m in model.modules():
        if hasattr(m, "offset") and hasattr(m, "mask") and isinstance(m.mask, torch.nn.Linear):
            torch.nn.init.normal_(m.offset.weight, std=0.3)
            torch.nn.init.normal_(m.mask.weight, std=0.3)
    path = tmp_path / f"m_{flavour}.onnx"
    report = edgeseg.export_onnx(model, path, sample=torch.randn(1, 3, 64, 64), flavour=flavour)
    assert report.passed, report.summary()
    print(flavour, report.summary())
    blocks = sum(INTERNIMAGE_CONFIGS["cpu"].depths)
    nodes = plugin_nodes(onnx.load(str(path)))
    assert nodes == (["EdgeSegDCNv3"] * blocks if flavour == "tensorrt" else [])


def test_deeplabv3plus_internimage_trains(tmp_path):
    cfg = TrainConfig(model="deeplabv3plus_internimage_cpu", dataset="synthetic", model_args={"drop_path": 0.0},
                      dataset_args={"num_images": 8, "size": (64, 64)}, epochs=4, batch_size=4, crop=64)
    _, state = train(cfg, tmp_path / "m.pt", progress=False, log=lambda *_: None)
    assert state["iteration"] == 8
    assert state["losses"][-1] < 0.8 * state["losses"][0], state["losses"]


def _spread_dcnv3(model, std=0.3):
    """Non-trivial sampling: untrained offsets are zero and the modulation uniform."""
    for m in model.modules():
        if hasattr(m, "offset") and hasattr(m, "mask") and isinstance(m.mask, torch.nn.Linear):
            torch.nn.init.normal_(m.offset.weight, std=std)
            torch.nn.init.normal_(m.mask.weight, std=std)
    return model


def test_lpsnet_on_internimage_takes_its_four_stages_as_c2_to_c5():
    from test_lpsnet import SMALL, small

    from edgeseg.errors import ModelError

    model = small(name="lpsnet_internimage_cpu").eval()
    c = INTERNIMAGE_CONFIGS["cpu"].channels
    assert isinstance(model.body, InternImage) and model.body.strides == [4, 8, 16, 32]
    assert [blk[0].in_channels for blk in model.fpn.inner_blocks[:3]] == [c, 2 * c, 4 * c]  # C2..C4; C5 through the PPM
    assert model.ppm.branches[0].in_channels == 8 * c
    with torch.no_grad():
        levels = model.features(torch.randn(1, 3, 128, 256))
    assert [tuple(f.shape[-2:]) for f in levels] == [(128 // s, 256 // s) for s in (4, 8, 16, 32, 64, 128)]
    # the backbone trains with the heads: a step's gradients reach every DCNv3 block
    from test_lpsnet import _batch

    model.train()
    x, targets = _batch()
    sum(model(x, targets).values()).backward()
    dcn = [m for m in model.body.modules() if type(m).__name__ == "DCNv3"]
    assert len(dcn) == sum(INTERNIMAGE_CONFIGS["cpu"].depths)
    assert all(m.input_proj.weight.grad is not None and m.input_proj.weight.grad.abs().sum() > 0 for m in dcn)
    assert create("lpsnet_internimage_cpu", num_classes=3, drop_path=0.0, **SMALL).body.stages[3].blocks[0].drop == 0.0
    with pytest.raises(ModelError, match="drop_path"):
        create("lpsnet_resnet18", num_classes=3, drop_path=0.1, **SMALL)


def test_lpsnet_internimage_t_builds_and_runs():
    """The paper's -T under LPSNet: built and run once (its export takes over 15 minutes on 2 cores)."""
    from test_lpsnet import small

    model = small(name="lpsnet_internimage_t").eval()
    assert sum(len(s.blocks) for s in model.body.stages) == 30 and model.body.out_channels == [64, 128, 256, 512]
    assert model.body.stages[3].blocks[-1].drop == pytest.approx(0.2)  # the configuration's drop path
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 128))
    assert out["panoptic"].shape == (1, 64, 128) and out["segments"].shape == (1, 7, 5)
    assert out["semantic_logits"].shape == (1, 3, 64, 128)


# Measured on 2 cores at load ~7 (other jobs): portable 203 s, tensorrt 80 s wall, 1 min 52 s of CPU time for both
# (the dynamo exporter); on an unloaded machine about 2 minutes together.
@pytest.mark.slow
@pytest.mark.parametrize("flavour", ["portable", "tensorrt"])
def test_lpsnet_internimage_exports_and_matches_pytorch(flavour, tmp_path):
    """lpsnet_internimage_cpu in ONNX Runtime against PyTorch (scores spread, DCNv3 sampling non-trivial): the
    same segment ids on >= 99.5 % of pixels at two sizes; the tensorrt graph has the DCNv3 blocks, the DCNv2
    semantic head and the merge as plugin nodes."""
    from test_lpsnet import export_and_compare, small, spread_scores

    model = spread_scores(_spread_dcnv3(small(seed=2, name="lpsnet_internimage_cpu", paste_score_threshold=0.05,
                                              min_stuff_area=16)))
    # traced where P7 is 2×2 (a size of 1 would be fixed in the graph); batch 1
    kinds = export_and_compare(model, flavour, tmp_path / "m.onnx", torch.randn(1, 3, 192, 192))
    assert ("EdgeSegDCNv3" in kinds) == (flavour == "tensorrt")
