import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


# Zoo models whose graph is another's with more layers or wider (the same modules and ops, nothing else differs):
# the export and FP16/INT8 parity tests run the smaller one for both (issue 18: ~3 min of the suite on 2 cores).
SAME_GRAPH_AS = {"hrnetv2_w18": "hrnetv2_w18_small", "hrnetv2_w48": "hrnetv2_w18_small", "fcdensenet103": "fcdensenet67"}


def same_graph_reason(name: str) -> str:
    return f"the same graph as {SAME_GRAPH_AS[name]} (wider or deeper): tested there"


@pytest.fixture(scope="session")
def zoo_export(tmp_path_factory):
    """``zoo_export(name, flavour, sample_hw=None, **kwargs)``: ``edgeseg.export_onnx``'s report (``.path``, ``.meta``)
    for ``models.create(name, **kwargs)`` built after ``torch.manual_seed(0)``, in eval mode, exported once per session
    per (name, flavour, sample size, kwargs): tests that check different things of the same graph share its export
    (issue 18). A failed export (``ExportCheckError``...) is raised again to every test that asks for it. Callers must
    not change the file; copy it first."""
    import edgeseg
    from edgeseg.models import create

    cache: dict = {}

    def export(name: str, flavour: str = "portable", sample_hw: tuple[int, int] | None = None, **kwargs):
        key = (name, flavour, sample_hw, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
        if key not in cache:
            torch.manual_seed(0)
            model = create(name, **kwargs).eval()
            sample = None if sample_hw is None else torch.randn(1, kwargs.get("in_channels", 3), *sample_hw)
            path = tmp_path_factory.mktemp(f"{name}_{flavour}") / f"{name}.onnx"
            try:
                cache[key] = edgeseg.export_onnx(model, path, flavour=flavour, sample=sample)
            except Exception as e:  # noqa: BLE001 -- kept, to fail every test of this graph the same way
                cache[key] = e
        if isinstance(cache[key], Exception):
            raise cache[key]
        return cache[key]

    return export


def sizes_for(divisor: int) -> list[tuple[int, int]]:
    """Two different (H, W), multiples of the model's divisor, at least 128 (the paper U-Net's mirror pad)."""
    base = max(128, 4 * divisor) // divisor * divisor
    return [(base, base), (base + divisor, base + 2 * divisor)]
