"""Parameter-free synthesizers for the hand-computable tests of the recurrent trainer."""

import torch
from torch import nn


class Lookup(nn.Module):
    """Returns, for a trigger, the gradient stored for it (an exact synthesizer)."""

    def __init__(self, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        super().__init__()
        self.pairs = pairs

    def forward(self, trigger, context=None):
        for state, grad in self.pairs:
            if torch.allclose(trigger, state, atol=1e-6):
                return grad.clone()
        raise AssertionError("no stored gradient for this trigger")


class Constant(nn.Module):
    """Predicts ``value`` everywhere (0.0: the zero synthesizer)."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, trigger, context=None):
        return torch.full_like(trigger, self.value)
