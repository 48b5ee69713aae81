"""Network building blocks: the style of a Dreamer variant's layers, MLPs, scalar heads (Gaussian
or two-hot) and the layer-normalised GRU cell."""

from __future__ import annotations

from dataclasses import dataclass

import torch as th
from torch import nn

from sb3_dreamer.common.distributions import symexp, symlog, two_hot_nll, unit_gaussian_nll
from sb3_dreamer.common.kernels import InputLinear, OneHotInput


def init_weights(module: nn.Module) -> None:
    """Glorot-uniform weights and zero biases, the initialisation of the TensorFlow originals."""
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


@dataclass(frozen=True)
class NetStyle:
    """How the networks of a Dreamer variant are built.

    DreamerV2: ELU, no normalisation, raw inputs. DreamerV3 (paper Appendix B): LayerNorm before
    every SiLU, and symlog-transformed vector inputs and reconstruction targets (paper Eq. 1).
    """

    activation_fn: type[nn.Module] = nn.ELU
    layer_norm: bool = False
    symlog_inputs: bool = False


V2_STYLE = NetStyle()
V3_STYLE = NetStyle(nn.SiLU, layer_norm=True, symlog_inputs=True)


def activation(style: NetStyle) -> nn.Module:
    """The style's activation, for after a layer whose output nothing else reads. ELU then runs in
    place: its backward reads its output, not its input, so this saves an activation-sized tensor."""
    return nn.ELU(inplace=True) if style.activation_fn is nn.ELU else style.activation_fn()


def dense(in_dim: int, out_dim: int, style: NetStyle = V2_STYLE) -> list[nn.Module]:
    """One hidden layer: Linear (no bias when a LayerNorm follows), LayerNorm if asked, activation.
    The linear layer is an :class:`InputLinear`: a first layer may be given :class:`OneHotInput`."""
    if style.layer_norm:
        return [InputLinear(in_dim, out_dim, bias=False), nn.LayerNorm(out_dim, eps=1e-3), activation(style)]
    return [InputLinear(in_dim, out_dim), activation(style)]


class MLP(nn.Sequential):
    """``nn.Sequential`` (same state dict) that runs its layers on the inputs flattened to one row
    per sample, ``(N, features)``, and restores the batch dimensions at the end.

    ``nn.Linear`` of inputs with several batch dimensions returns a view of its 2-D product, and an
    in-place activation (DreamerV2's ELU, see :func:`activation`) of a view makes autograd clone
    and copy the whole gradient in the backward pass; on 2-D inputs the product is no view."""

    def forward(self, x: th.Tensor | OneHotInput) -> th.Tensor:  # type: ignore[override]
        lead = (x.index if isinstance(x, OneHotInput) else x).shape[:-1]
        if len(lead) == 1:
            return super().forward(x)
        flat = x.flatten() if isinstance(x, OneHotInput) else x.reshape(-1, x.shape[-1])
        out = super().forward(flat)
        return out.view(*lead, out.shape[-1])


def mlp(in_dim: int, out_dim: int, layers: int, units: int, style: NetStyle = V2_STYLE) -> MLP:
    """``layers`` hidden layers of ``units`` (see :func:`dense`), then a linear output of ``out_dim``."""
    modules: list[nn.Module] = []
    for _ in range(layers):
        modules += dense(in_dim, units, style)
        in_dim = units
    modules.append((nn.Linear if modules else InputLinear)(in_dim, out_dim))
    return MLP(*modules)


class ScalarHead(nn.Module):
    """``p(y | feat)`` of a scalar such as the reward or the value.

    ``bins`` = 0: a unit Gaussian whose mean the network outputs (DreamerV2; the negative
    log-likelihood is ``(y - mean)^2 / 2``). ``bins`` > 0: a categorical over ``bins`` values spaced
    evenly in symlog space on [-20, 20], trained with two-hot targets and read out as
    ``symexp(E[bin])`` (DreamerV3 paper Eq. 9-10); its output layer starts at zero (so the first
    predictions are exactly 0, paper Appendix B) -- see :meth:`zero_output_`.
    """

    def __init__(
        self, in_dim: int, layers: int, units: int, style: NetStyle = V2_STYLE, bins: int = 0, limit: float = 20.0
    ) -> None:
        super().__init__()
        self.bins = bins
        self.net = mlp(in_dim, bins or 1, layers, units, style)
        if bins:  # mirrored halves: exactly symmetric, with 0 an exact bin for odd counts
            half = th.linspace(0.0, limit, (bins + 1) // 2)
            support = th.cat([-half.flip(0)[: -1 if bins % 2 else None], half])
            self.register_buffer("support", support, persistent=False)

    def forward(self, feat: th.Tensor) -> th.Tensor:
        """Raw outputs: the mean (Gaussian, shape ``(...)``) or the bin logits (``(..., bins)``)."""
        out = self.net(feat).float()  # distributions in float32, also under bfloat16 autocast
        return out if self.bins else out.squeeze(-1)

    def mean(self, out: th.Tensor) -> th.Tensor:
        """The expected value from :meth:`forward`'s output."""
        if not self.bins:
            return out
        with th.autocast(out.device.type, enabled=False):  # float32: autocast would run this product in bfloat16
            return symexp(out.softmax(-1) @ self.support)

    def predict(self, feat: th.Tensor) -> th.Tensor:
        return self.mean(self(feat))

    def nll(self, out: th.Tensor, target: th.Tensor) -> th.Tensor:
        """``-ln p(target)`` per element, from :meth:`forward`'s output (without constants)."""
        if not self.bins:
            return unit_gaussian_nll(out, target)
        return two_hot_nll(out.log_softmax(-1), symlog(target), self.support)

    def zero_output_(self) -> None:
        """Zero the output layer of a two-hot head (called after the global initialisation)."""
        if self.bins:
            last = self.net[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)


class GRUCell(nn.Module):
    """The GRU of DreamerV2's RSSM: one fused linear layer over ``[input, state]``, LayerNorm on
    the gate pre-activations, and an update gate biased towards keeping the state (``- 1``)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.linear = InputLinear(input_size + hidden_size, 3 * hidden_size, bias=False)
        self.norm = nn.LayerNorm(3 * hidden_size)

    def forward(self, x: th.Tensor, h: th.Tensor) -> th.Tensor:
        parts = self.norm(self.linear(th.cat([x, h], -1)))
        reset, cand, update = parts.chunk(3, -1)
        reset = th.sigmoid(reset)
        cand = th.tanh(reset * cand)
        update = th.sigmoid(update - 1.0)
        return update * cand + (1.0 - update) * h
