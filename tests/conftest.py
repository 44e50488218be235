import pytest
import torch

from dni_utils.data import Dataset


@pytest.fixture
def tiny_data() -> Dataset:
    """A generated 4-class problem of 8x8 images: learnable, offline, instant."""
    gen = torch.Generator().manual_seed(0)
    protos = torch.rand(4, 1, 8, 8, generator=gen)
    y = torch.randint(0, 4, (320,), generator=gen)
    x = (protos[y] + 0.3 * torch.rand(320, 1, 8, 8, generator=gen)).clamp(0, 1)
    return Dataset("tiny", x[:256], y[:256], x[256:], y[256:], n_classes=4, source="generated", synthetic=True)
