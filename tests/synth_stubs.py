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


class Shadow(nn.Module):
    """An exact synthesizer for a stage of the multi-process pipeline (``dni_utils.trainers.parallel``):
    it runs its own copy of every later stage on the trigger (the label comes from the cDNI
    context), returns the true gradient of the summed cross-entropy there, and then takes the
    plain-SGD step those stages take on that batch, so that it stays exact batch after batch.
    The copy is not registered as a submodule: the synthesizer has no trainable parameters."""

    def __init__(self, downstream: nn.Module, lr: float) -> None:
        super().__init__()
        self._downstream = [downstream]
        self.lr = lr

    def forward(self, trigger, context=None):
        net = self._downstream[0]
        params = list(net.parameters())
        with torch.enable_grad():
            h = trigger.detach().requires_grad_()
            loss = torch.nn.functional.cross_entropy(net(h), context.argmax(1), reduction="sum")
            grads = torch.autograd.grad(loss, [h, *params])
        with torch.no_grad():
            for p, g in zip(params, grads[1:]):
                p -= self.lr * g
        return grads[0]


def shadow(cfg, rank, net, split):
    """``ParallelConfig.synth_factory`` for ``Shadow``: stage ``rank``'s exact synthesizer."""
    import copy

    start = sum(split[: rank + 1])
    return Shadow(copy.deepcopy(nn.Sequential(*net.blocks[start:], net.head)), cfg.lr)
