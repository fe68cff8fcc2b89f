import pytest
import torch

from conftest import sizes_for
from edgeseg.errors import ModelError
from edgeseg.models import count_parameters, create, gflops, list_models

EXPECTED = {  # the papers' parameter counts (millions) where the variant is the paper's
    "fcn8s_vgg16": 134.3, "fcdensenet56": 1.4, "fcdensenet67": 3.5, "fcdensenet103": 9.4,
    "hrnetv2_w18": 9.6, "hrnetv2_w48": 65.9, "unet": 31.0, "segnet": 29.4,
}


def test_zoo_lists_every_architecture():
    names = list_models()
    for family in ("fcn32s_vgg16", "fcn16s_vgg16", "fcn8s_vgg16", "fcn8s_resnet18", "unet", "unet_padded", "segnet",
                   "deeplabv3plus_resnet18_os16", "deeplabv3plus_resnet50_os8", "deeplabv3plus_mobilenetv3_os16",
                   "fcdensenet56", "fcdensenet103", "hrnetv2_w18_small", "hrnetv2_w18", "hrnetv2_w48"):
        assert family in names


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parameter_counts_match_the_papers(name):
    with torch.device("meta"):
        m = create(name, num_classes=21 if "fcn" in name or name == "segnet" else 11 if "dense" in name else 19 if "hrnet" in name else 2)
    assert count_parameters(m) / 1e6 == pytest.approx(EXPECTED[name], rel=0.03)


@pytest.mark.parametrize("name", list_models())
def test_forward_shapes_and_one_training_step(name):
    model = create(name, num_classes=3, in_channels=1)
    (h1, w1), (h2, w2) = sizes_for(model.size_divisor)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, h1, w1))["logits"].shape == (1, 3, h1, w1)
        assert model(torch.randn(2, 1, h2, w2))["logits"].shape == (2, 3, h2, w2)
    model.train()
    x, y = torch.randn(2, 1, h1, w1), torch.randint(0, 3, (2, h1, w1))
    out = model(x)  # a model with auxiliary training heads names its paper's loss terms (edgeseg.models.realtime)
    loss = sum(model.losses(out, y).values()) if hasattr(model, "losses") else torch.nn.functional.cross_entropy(out["logits"], y)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    with torch.device("meta"):
        assert gflops(create(name, num_classes=3), 3, (256, 256)) > 0


def test_fcn_upsampling_starts_bilinear_and_deeplab_output_stride():
    from edgeseg.models.common import bilinear_upsampler

    up = bilinear_upsampler(1, 2)
    x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    y = up(x)
    assert y.shape == (1, 1, 4, 4)
    # interior of a bilinear ×2 upsampling: the mean of neighbours at quarter offsets
    assert y[0, 0, 1, 1].item() == pytest.approx(0.75 * 0.75 * 0 + 0.75 * 0.25 * 1 + 0.25 * 0.75 * 2 + 0.25 * 0.25 * 3)
    for os_ in (8, 16):
        m = create(f"deeplabv3plus_resnet18_os{os_}", num_classes=2).eval()
        low, high = m.backbone(torch.zeros(1, 3, 128, 128))
        assert high.shape[-1] == 128 // os_ and low.shape[-1] == 32


def test_hrnet_heads_and_bad_arguments():
    for head in ("v1", "v2", "v2p"):
        m = create("hrnetv2_w18_small", num_classes=4, head=head).eval()
        assert m(torch.zeros(1, 3, 64, 96))["logits"].shape == (1, 4, 64, 96)
    with pytest.raises(ModelError, match="unknown model"):
        create("fcn4s")
    with pytest.raises(ModelError, match="takes no argument"):
        create("segnet", num_classes=2, depth=3)


def test_torchvision_segmentation_under_the_zoo_contract():
    """torchvision's LR-ASPP wrapped: its "out" as "logits" (same numbers), the zoo's config, and metadata from it."""
    import torchvision

    from edgeseg.export import default_meta
    from edgeseg.models import TorchvisionSegmentation

    torch.manual_seed(0)
    model = TorchvisionSegmentation("lraspp_mobilenet_v3_large", 5).eval()
    torch.manual_seed(0)
    raw = torchvision.models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=5).eval()
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        out = model(x)
        assert list(out) == ["logits"] and torch.equal(out["logits"], raw(x)["out"])
    assert out["logits"].shape == (1, 5, 96, 128) and model.size_divisor == 32
    meta = default_meta(model)
    assert meta.model == "lraspp_mobilenet_v3_large" and meta.num_classes == 5 and meta.in_channels == 3
