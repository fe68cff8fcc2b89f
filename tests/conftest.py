import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


def sizes_for(divisor: int) -> list[tuple[int, int]]:
    """Two different (H, W), multiples of the model's divisor, at least 128 (the paper U-Net's mirror pad)."""
    base = max(128, 4 * divisor) // divisor * divisor
    return [(base, base), (base + divisor, base + 2 * divisor)]
