"""Network building blocks: MLPs, the layer-normalised GRU cell, and encoders/decoders chosen
from the observation space (a CNN for images of any size from 5x5 up, an MLP for vectors, both
for ``Dict`` spaces)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from torch import nn
from torch.autograd.function import once_differentiable

from sb3_dreamer.common.distributions import (
    bernoulli_nll,
    symexp,
    symlog,
    two_hot_nll,
    unit_gaussian_nll,
    unit_gaussian_nll_sum,
)

#: Key under which a non-Dict observation is stored.
OBS_KEY = "obs"
#: The smallest image side the CNN accepts.
MIN_IMAGE_SIZE = 5


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


def autocast_dtype(device_type: str) -> th.dtype | None:
    """The dtype ``torch.autocast`` computes in on ``device_type`` now, or ``None`` outside autocast."""
    return th.get_autocast_dtype(device_type) if th.is_autocast_enabled(device_type) else None


class OneHotInput:
    """A batch of layer inputs ``x`` of which the block ``x[..., offset : offset + width]`` is one-hot
    vectors: the model states ``[h_t, z_t]`` of imagination (``offset`` = deter size) or the
    transition's input ``[z_t, a_t]`` (``offset`` = 0), with ``z_t`` stored as its class indices.

    :class:`InputLinear` reads it by gathering one weight column per categorical variable instead
    of multiplying by the mostly-zero one-hot block (32 columns of 1024 at DreamerV3's sizes): the
    same sum, about 30 times fewer FLOPs. The inputs carry no gradient; a layer whose weights need
    one computes it from ``dense`` (the full inputs).

    :param dense: The full inputs ``(..., in_features)``, or ``None`` if never needed
    :param rest: The inputs outside the one-hot block, in order ``(..., in_features - width)``
    :param index: Flat one-hot positions in the block ``(..., variables)``: class + variable x classes
    """

    def __init__(self, dense: th.Tensor | None, rest: th.Tensor, index: th.Tensor, offset: int, width: int) -> None:
        self.dense, self.rest, self.index, self.offset, self.width = dense, rest, index, offset, width

    def __getitem__(self, key: int | slice) -> OneHotInput:  # along the leading (time) axis
        dense = None if self.dense is None else self.dense[key]
        return OneHotInput(dense, self.rest[key], self.index[key], self.offset, self.width)

    def detach(self) -> OneHotInput:
        return self  # built without autograd

    def flatten(self) -> OneHotInput:
        """The same inputs as one row per sample: every tensor reshaped to 2-D."""
        rows = self.index.shape[:-1].numel()
        dense = None if self.dense is None else self.dense.reshape(rows, self.dense.shape[-1])
        rest, index = self.rest.reshape(rows, self.rest.shape[-1]), self.index.reshape(rows, self.index.shape[-1])
        return OneHotInput(dense, rest, index, self.offset, self.width)


GatherTables = tuple[th.Tensor, th.Tensor]


def _gather_tables(weight: th.Tensor, lo: int, hi: int) -> GatherTables:
    """``weight`` split for :func:`_gathered_linear`: the transposed weight of the inputs outside the
    one-hot block ``[lo, hi)``, and the block's columns as rows (one per one-hot position)."""
    return th.cat([weight[:, :lo], weight[:, hi:]], 1).t(), weight[:, lo:hi].t().contiguous()


def _gathered_linear(tables: GatherTables, bias: th.Tensor | None, rest: th.Tensor, index: th.Tensor) -> th.Tensor:
    """``x W^T + b`` for :class:`OneHotInput` ``x``, flattened to ``(rows, out_features)``: per row, the
    sum of the weight columns its one-hot positions select, plus the bias, plus the product with the
    inputs outside the one-hot block, accumulated into one output tensor."""
    rest_weight_t, table = tables
    out = nn.functional.embedding_bag(index.reshape(-1, index.shape[-1]), table, mode="sum")
    if bias is not None:
        out += bias
    return out.addmm_(rest.reshape(-1, rest.shape[-1]).to(table.dtype), rest_weight_t)


class _GatheredLinearFunction(th.autograd.Function):
    """:func:`_gathered_linear` forward; the weight gradient ``grad^T x``. On CPU in float32 the
    one-hot block's columns are summed rows of ``grad``, one ``index_add_`` per categorical variable
    (the block is 32 times sparser than a dense product sees, 1.3-1.5x faster than the product);
    elsewhere one dense product with the full inputs (bfloat16's matrix units, and the GPU)."""

    @staticmethod
    def forward(ctx, weight, bias, dense, tables, rest, index, offset):  # type: ignore[override]
        ctx.save_for_backward(dense, rest)
        # ``index`` is not saved for a version check: imagination writes its rows t + 1 after the
        # layer read row t (the check on ``dense`` still catches a graph kept across imaginations)
        ctx.index, ctx.offset, ctx.has_bias = index, offset, bias is not None
        return _gathered_linear(tables, bias, rest, index)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        dense, rest = ctx.saved_tensors
        grad = grad.reshape(-1, grad.shape[-1])
        if grad.device.type == "cpu" and grad.dtype == th.float32:
            grad_weight = _one_hot_weight_grad(grad, rest, ctx.index, ctx.offset, dense.shape[-1] - rest.shape[-1])
        else:
            grad_weight = grad.t() @ dense.reshape(-1, dense.shape[-1]).to(grad.dtype)
        return grad_weight, grad.sum(0) if ctx.has_bias else None, None, None, None, None, None


def _one_hot_weight_grad(grad: th.Tensor, rest: th.Tensor, index: th.Tensor, offset: int, width: int) -> th.Tensor:
    """``grad^T x`` for :class:`OneHotInput` ``x``: the product with the inputs outside the one-hot
    block, and for each block column the sum of the rows of ``grad`` whose one-hot selects it."""
    rest_grad = rest.reshape(-1, rest.shape[-1]).to(grad.dtype).t() @ grad
    block = grad.new_zeros(width, grad.shape[-1])
    for variable in index.reshape(-1, index.shape[-1]).t().contiguous():
        block.index_add_(0, variable, grad)
    return th.cat([rest_grad[:offset], block, rest_grad[offset:]]).t()


class _StashedLinear(th.autograd.Function):
    """``x W^T + b`` whose backward gives the input's gradient only and appends ``(x, grad)`` to
    ``stash``; :class:`DeferredWeightGrads` computes the weight's afterwards, for all steps at once."""

    @staticmethod
    def forward(ctx, x, weight, bias, deferred):  # type: ignore[override]
        x = x.to(weight.dtype)
        ctx.save_for_backward(x, weight)
        ctx.deferred = deferred
        return nn.functional.linear(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        stash, collector = ctx.deferred
        # Only for a backward pass that will reach the collection: one asking for other gradients
        # only (``autograd.grad(..., inputs)``) would leave its entries to the next pass.
        if th._C._will_engine_execute_node(collector):
            stash.append((x, grad))
        return grad @ weight, None, None, None


class _CollectWeightGrads(th.autograd.Function):
    """Passes a loop's inputs through. Autograd runs its backward after the backward of every step
    that used them, and there it returns the deferred layers' weight and bias gradients."""

    @staticmethod
    def forward(ctx, deferred, *tensors):  # type: ignore[override]
        ctx.deferred = deferred
        return tuple(t.view_as(t) for t in tensors[len(deferred.params) :])

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads):  # type: ignore[override]
        return (None, *ctx.deferred.collect(), *grads)


class DeferredWeightGrads:
    """Weight gradients of linear layers applied once per step of a loop over time (the RSSM's
    filtering loop, 16 sequences x 64 steps at DreamerV3's sizes), as one product per layer,
    ``sum_t grad_t^T x_t = [grad_0 ... grad_{T-1}]^T [x_0 ... x_{T-1}]``, instead of a product of 16
    rows per step and a sum of T full-size gradients: the same sums, and a world-model update on
    CPU 1.1-1.15x faster in float32, 1.3-1.4x under bfloat16 autocast.

    Use: pass every input of the loop through :meth:`inputs` (so that autograd reaches the
    collection only after every step's backward), then run the loop within the block. Outside
    autograd, or with frozen weights, both do nothing. The loop's graph then supports no double
    backward (``create_graph=True``), and keeps each step's input and output gradient until the
    collection (about 30 MB at DreamerV3 S's sizes, twice that while collecting).
    """

    def __init__(self, layers: list[InputLinear]) -> None:
        self.layers = layers
        self.params = [p for layer in layers for p in (layer.weight, layer.bias) if p is not None]
        self.stashes: list[list[tuple[th.Tensor, th.Tensor]]] = [[] for _ in layers]
        self.active = th.is_grad_enabled() and all(p.requires_grad for p in self.params)
        self.collector: th.autograd.graph.Node | None = None  # the collection's node, set by :meth:`inputs`

    def inputs(self, *tensors: th.Tensor) -> tuple[th.Tensor, ...]:
        if not self.active:
            return tensors
        outputs = _CollectWeightGrads.apply(self, *self.params, *tensors)
        self.collector = outputs[0].grad_fn
        return outputs

    def collect(self) -> list[th.Tensor | None]:
        grads: list[th.Tensor | None] = []
        for layer, stash in zip(self.layers, self.stashes, strict=True):
            if not stash:  # no gradient reached the loop
                grads += [None] * (1 if layer.bias is None else 2)
                continue
            xs, dys = th.cat([x for x, _ in stash]), th.cat([grad for _, grad in stash])
            stash.clear()
            grads.append((dys.t() @ xs).to(layer.weight.dtype))
            if layer.bias is not None:
                grads.append(dys.sum(0, dtype=layer.bias.dtype))
        return grads

    def __enter__(self) -> DeferredWeightGrads:
        if self.active:
            if self.collector is None:
                raise RuntimeError("DeferredWeightGrads: pass the loop's inputs through inputs() first")
            for layer, stash in zip(self.layers, self.stashes, strict=True):
                stash.clear()
                # the step's weights, detached (their gradient is the collection's) and cast once
                # to the autocast dtype, if any (bfloat16 autocast would cast them at every step)
                dtype = autocast_dtype(layer.weight.device.type) or layer.weight.dtype
                weight, bias = (None if p is None else p.detach().to(dtype) for p in (layer.weight, layer.bias))
                layer._deferred = ((stash, self.collector), weight, bias)
        return self

    def __exit__(self, *exc: object) -> None:
        for layer in self.layers:
            layer._deferred = None


class InputLinear(nn.Linear):
    """``nn.Linear`` (same parameters and state dict) that also reads :class:`OneHotInput`."""

    #: Split weights kept by :func:`reused_gather_tables`, by (dtype, block); ``None`` outside it
    _tables: dict[tuple[th.dtype, int, int], GatherTables] | None = None

    #: ``((stash, collection node), weight, bias)`` within a :class:`DeferredWeightGrads` block, else ``None``
    _deferred: tuple[tuple[list, th.autograd.graph.Node], th.Tensor, th.Tensor | None] | None = None

    def forward(self, x: th.Tensor | OneHotInput) -> th.Tensor:
        if isinstance(x, th.Tensor):
            if self._deferred is not None:
                deferred, weight, bias = self._deferred
                return _StashedLinear.apply(x, weight, bias, deferred)
            return super().forward(x)
        lo, hi = x.offset, x.offset + x.width
        weight, bias = self.weight, self.bias
        dtype = autocast_dtype(weight.device.type)
        if dtype is not None:  # gather from weights in the autocast dtype
            weight, bias = weight.to(dtype), None if bias is None else bias.to(dtype)
        # (reshaped only where the inputs have more than one batch dimension: an in-place activation
        # of a view would make autograd clone the whole gradient, see :class:`MLP`)
        shape = None if x.index.dim() == 2 else (*x.index.shape[:-1], -1)
        track = th.is_grad_enabled() and self.weight.requires_grad
        if track and x.dense is None:  # autograd through the gather itself (no full inputs to use)
            return _viewed(_gathered_linear(_gather_tables(weight, lo, hi), bias, x.rest, x.index), shape)
        key = (weight.dtype, lo, hi)
        tables = None if self._tables is None else self._tables.get(key)
        if tables is None:
            with th.no_grad():
                tables = _gather_tables(weight, lo, hi)
            if self._tables is not None:
                self._tables[key] = tables
        if track:  # (reshaped outside the Function: a view made inside it could not be modified in place)
            out = _GatheredLinearFunction.apply(weight, bias, x.dense, tables, x.rest, x.index, lo)
            return _viewed(out, shape)
        return _viewed(_gathered_linear(tables, bias, x.rest, x.index), shape)


def _viewed(out: th.Tensor, shape: tuple[int, ...] | None) -> th.Tensor:
    return out if shape is None else out.view(shape)


@contextmanager
def reused_gather_tables(*modules: nn.Module) -> Iterator[None]:
    """Within the block, every :class:`InputLinear` of ``modules`` splits its weight for the gather
    once, at its first :class:`OneHotInput`, instead of at every call: for loops over time in which
    the weights do not change (imagination)."""
    layers = [m for module in modules for m in module.modules() if isinstance(m, InputLinear)]
    for layer in layers:
        layer._tables = {}
    try:
        yield
    finally:
        for layer in layers:
            layer._tables = None


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


@dataclass(frozen=True)
class ObsPart:
    """How one observation entry is read: an image (``C, H, W`` after layout handling) or a vector."""

    key: str
    is_image: bool
    shape: tuple[int, ...]  # (C, H, W) for images, (D,) for vectors
    channels_last: bool
    dtype: str  # "bool", "uint8" or "float"

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


def _dtype_kind(space: spaces.Box) -> str:
    if space.dtype == np.bool_:
        return "bool"
    if space.dtype == np.uint8:
        return "uint8"
    return "float"


def _box_part(key: str, space: spaces.Space, channels_last: bool | None) -> ObsPart:
    if not isinstance(space, spaces.Box):
        where = "" if key == OBS_KEY else f" (Dict key {key!r})"
        raise TypeError(
            f"Dreamer supports Box (image or vector) observations and Dict spaces of them, but got {space}{where}."
        )
    shape = tuple(int(s) for s in space.shape)
    kind = _dtype_kind(space)
    if len(shape) == 2 and kind == "uint8":  # a greyscale image without a channel axis
        shape = (*shape, 1)
        channels_last = True
    if len(shape) == 3:
        if is_image_space(space, check_channels=False):
            # uint8 pixels: SB3's VecTransposeImage hands the policy channels-first images, using
            # this same test, so follow it whatever ``channels_last`` says
            channels_last = not is_image_space_channels_first(space)  # type: ignore[arg-type]
        elif channels_last is None:  # MinAtar-like planes: channels last unless the last axis is the larger
            channels_last = shape[-1] <= shape[0]
        c, h, w = (shape[2], shape[0], shape[1]) if channels_last else shape
        if min(h, w) < MIN_IMAGE_SIZE:
            raise TypeError(
                f"Image observation {space} has a side of {min(h, w)} pixels; the CNN encoder "
                f"needs at least {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE}."
            )
        return ObsPart(key, True, (c, h, w), bool(channels_last), kind)
    if len(shape) in (1, 2) or (len(shape) == 0):
        return ObsPart(key, False, (int(np.prod(shape)),), False, kind)
    raise TypeError(f"Box observation {space} with {len(shape)} dimensions is not supported (1 to 3).")


def observation_parts(space: spaces.Space, channels_last: bool | None = None) -> list[ObsPart]:
    """Analyse an observation space; raises ``TypeError`` naming any unsupported space."""
    if isinstance(space, spaces.Dict):
        if len(space.spaces) == 0:
            raise TypeError("Empty Dict observation space is not supported.")
        return [_box_part(key, sub, channels_last) for key, sub in space.spaces.items()]
    return [_box_part(OBS_KEY, space, channels_last)]


def as_obs_dict(obs: th.Tensor | Mapping[str, th.Tensor]) -> Mapping[str, th.Tensor]:
    return obs if isinstance(obs, Mapping) else {OBS_KEY: obs}


def preprocess(part: ObsPart, x: th.Tensor, batch_dims: int) -> th.Tensor:
    """Raw observation (native dtype, native layout) -> float network input.

    Images become ``(..., C, H, W)``: bool planes as 0/1, uint8 pixels scaled to [-0.5, 0.5]
    (DreamerV2), floats unchanged. Vectors are flattened floats.
    """
    lead = x.shape[:batch_dims]
    if part.is_image:
        x = x.reshape(*lead, *(part.shape[1:] + part.shape[:1] if part.channels_last else part.shape))
        if part.channels_last:
            x = x.movedim(-1, -3)
    else:
        x = x.reshape(*lead, part.size)
    if part.dtype == "uint8":  # one float copy, scaled in place
        return x.to(th.float32, copy=True).div_(255.0).sub_(0.5)
    return x.float()


def _valid_stages(h: int, w: int) -> list[tuple[int, int]]:
    """Spatial sizes after each of four 4x4 stride-2 stages without padding (64 -> 31 -> 14 -> 6 -> 2)."""
    sizes = [(h, w)]
    for _ in range(4):
        sizes.append(((sizes[-1][0] - 4) // 2 + 1, (sizes[-1][1] - 4) // 2 + 1))
    return sizes


def _stages(h: int, w: int) -> list[tuple[int, int]]:
    """Spatial sizes after each stride-2 stage: halve while the short side is 8 or more (at most 4 stages)."""
    sizes = [(h, w)]
    while min(sizes[-1]) >= 8 and len(sizes) <= 4:
        sizes.append((sizes[-1][0] // 2, sizes[-1][1] // 2))
    return sizes


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of ``(N, C, H, W)`` feature maps (DreamerV3's CNN norm)."""

    def forward(self, x: th.Tensor) -> th.Tensor:
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


def conv_block(conv: nn.Module, channels: int, style: NetStyle) -> list[nn.Module]:
    """A convolution followed by the style's channel LayerNorm (if any) and activation."""
    if style.layer_norm:
        conv.bias = None  # the norm's offset replaces it
        return [conv, ChannelNorm(channels, eps=1e-3), activation(style)]
    return [conv, activation(style)]


#: Images whose short side is below this get a 3x3 stride-1 stem convolution before the stride-2 stages.
STEM_BELOW = 16


#: Padding of the CNNs: "same" (DreamerV3; any image size) or "valid" (DreamerV1/V2's 64x64 layout).
CNN_PADDINGS = ("same", "valid")
#: The image size DreamerV1/V2's "valid" CNN is defined for, and its decoder's kernel sizes.
PAPER_IMAGE_SIZE = (64, 64)
PAPER_DECODER_KERNELS = (5, 5, 6, 6)


def nhwc(x: th.Tensor) -> th.Tensor:
    """``(N, C, H, W)`` feature maps stored channels-last (NHWC). The CNNs keep every activation in
    this layout: oneDNN's convolutions then read and write it directly, where plain NCHW maps are
    reordered to a blocked layout and back around each one (1.3x the 64x64 RGB step on CPU)."""
    return x.contiguous(memory_format=th.channels_last)


class ConvEncoder(nn.Module):
    """4x4 stride-2 convolutions (at most four) while the short side is 8 pixels or more, with
    ``depth x [1, 2, 4, 8]`` channels.

    ``padding="same"`` (DreamerV3, any size): 64x64 -> 32 -> 16 -> 8 -> 4x4x8 depth. Images with a
    short side under 16 pixels (MinAtar's 10x10) would get at most one such stage, so a 3x3
    stride-1 stem convolution of ``depth`` channels reads them first and the stages then double it
    (10x10: stem, then one stage to 5x5x2 depth).

    ``padding="valid"`` on a 64x64 image: DreamerV1/V2's CNN, 64 -> 31 -> 14 -> 6 -> 2x2x8 depth
    (the papers define no other size; others get the "same" layout)."""

    def __init__(
        self, channels: int, height: int, width: int, depth: int, style: NetStyle = V2_STYLE, padding: str = "same"
    ) -> None:
        super().__init__()
        if padding not in CNN_PADDINGS:
            raise ValueError(f"cnn_padding must be one of {CNN_PADDINGS}, got {padding!r}.")
        self.valid = padding == "valid" and (height, width) == PAPER_IMAGE_SIZE
        self.sizes = (_valid_stages if self.valid else _stages)(height, width)
        self.stem = min(height, width) < STEM_BELOW
        if self.stem:  # channels at each resolution, the input's included
            self.channels = [depth * min(2**i, 8) for i in range(len(self.sizes))]
            layers = conv_block(nn.Conv2d(channels, self.channels[0], 3, 1, 1), self.channels[0], style)
        else:
            self.channels = [channels] + [depth * 2**i for i in range(len(self.sizes) - 1)]
            layers = []
        for c_in, c_out in zip(self.channels[:-1], self.channels[1:], strict=False):
            layers += conv_block(nn.Conv2d(c_in, c_out, 4, 2, 0 if self.valid else 1), c_out, style)
        self.net = nn.Sequential(*layers)
        self.out_dim = self.channels[-1] * self.sizes[-1][0] * self.sizes[-1][1]

    def forward(self, x: th.Tensor) -> th.Tensor:
        lead = x.shape[:-3]
        return self.net(nhwc(x.reshape(-1, *x.shape[-3:]))).reshape(*lead, self.out_dim)


class PointConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` (same parameters and state dict) that computes its transposed
    convolution of a 1x1 map as the matrix product it is: the same sum, without the convolution's
    overhead (8x faster forward and backward on CPU for DreamerV2's first decoder stage)."""

    def forward(self, x: th.Tensor, output_size: list[int] | None = None) -> th.Tensor:
        if x.shape[-2:] != (1, 1) or output_size is not None:
            return super().forward(x, output_size)
        kh, kw = self.kernel_size
        bias = None if self.bias is None else self.bias.repeat_interleave(kh * kw)
        out = nn.functional.linear(x.flatten(1), self.weight.flatten(1).t(), bias)
        return nhwc(out.view(-1, self.out_channels, kh, kw))


class ConvDecoder(nn.Module):
    """The mirror of :class:`ConvEncoder`: features -> ``(C, H, W)`` image parameters (the last
    transposed convolution outputs them, or the stem's mirror, a 3x3 convolution).

    After a "valid" encoder, DreamerV1/V2's decoder: a linear layer to a 1x1 map of ``32 depth``
    channels (no activation), then 5, 5, 6, 6 transposed-kernel stages, 1 -> 5 -> 13 -> 30 -> 64."""

    def __init__(self, in_dim: int, encoder: ConvEncoder, out_channels: int, style: NetStyle = V2_STYLE) -> None:
        super().__init__()
        sizes, chans = encoder.sizes, encoder.channels
        layers: list[nn.Module] = []
        if encoder.valid:
            self.start = (encoder.out_dim, 1, 1)
            stages = [encoder.out_dim, *chans[-2:0:-1], out_channels]
            for i, kernel in enumerate(PAPER_DECODER_KERNELS):
                deconv = (PointConvTranspose2d if i == 0 else nn.ConvTranspose2d)(stages[i], stages[i + 1], kernel, 2)
                layers += [deconv] if i == len(PAPER_DECODER_KERNELS) - 1 else conv_block(deconv, stages[i + 1], style)
        else:
            self.start = (chans[-1], *sizes[-1])
            layers += [ChannelNorm(chans[-1], eps=1e-3)] if style.layer_norm else []
            layers.append(activation(style))
            for i in range(len(sizes) - 1, 0, -1):
                (h_out, w_out), (h_in, w_in) = sizes[i - 1], sizes[i]
                pad = (h_out - 2 * h_in, w_out - 2 * w_in)  # 0 or 1: restores odd sizes exactly
                last = i == 1 and not encoder.stem
                out = out_channels if last else chans[i - 1]
                deconv = nn.ConvTranspose2d(chans[i], out, 4, 2, 1, output_padding=pad)
                layers += [deconv] if last else conv_block(deconv, chans[i - 1], style)
            if encoder.stem:
                layers.append(nn.Conv2d(chans[0], out_channels, 3, 1, 1))
        self.linear = nn.Linear(in_dim, int(np.prod(self.start)))
        self.net = nn.Sequential(*layers)

    def forward(self, feat: th.Tensor) -> th.Tensor:
        lead = feat.shape[:-1]
        x = self.net(nhwc(self.linear(feat).reshape(-1, *self.start)))
        return x.reshape(*lead, *x.shape[1:])


class ObservationEncoder(nn.Module):
    """Embeds a (possibly Dict) observation: one CNN per image entry, one MLP over all vectors."""

    def __init__(
        self,
        parts: list[ObsPart],
        cnn_depth: int,
        mlp_layers: int,
        mlp_units: int,
        style: NetStyle = V2_STYLE,
        cnn_padding: str = "same",
    ) -> None:
        super().__init__()
        self.parts, self.style = parts, style
        self.cnns = nn.ModuleDict(
            {p.key: ConvEncoder(*p.shape, cnn_depth, style, cnn_padding) for p in parts if p.is_image}
        )
        self.vector_keys = [p.key for p in parts if not p.is_image]
        vec_dim = sum(p.size for p in parts if not p.is_image)
        self.mlp = None
        if vec_dim:  # max(layers, 1) hidden layers; their output is the vector embedding
            layers: list[nn.Module] = []
            for i in range(max(mlp_layers, 1)):
                layers += dense(vec_dim if i == 0 else mlp_units, mlp_units, style)
            self.mlp = MLP(*layers)
        self.out_dim = sum(c.out_dim for c in self.cnns.values()) + (mlp_units if vec_dim else 0)

    def forward(self, inputs: Mapping[str, th.Tensor]) -> th.Tensor:
        """``inputs``: preprocessed float tensors by key."""
        embeds = [cnn(inputs[key]) for key, cnn in self.cnns.items()]
        if self.mlp is not None:
            vec = th.cat([inputs[k] for k in self.vector_keys], -1)
            embeds.append(self.mlp(vec))
        return th.cat(embeds, -1) if len(embeds) > 1 else embeds[0]


class ObservationDecoder(nn.Module):
    """Reconstructs every observation entry from the model state (the image predictor of
    DreamerV2: ``p(x_t | h_t, z_t)``).

    Likelihoods: bool entries are Bernoulli (binary planes such as MinAtar's), all others a
    unit-variance Gaussian (DreamerV2's image and vector predictors).
    """

    def __init__(self, feat_dim: int, encoder: ObservationEncoder, mlp_layers: int, mlp_units: int) -> None:
        super().__init__()
        self.parts, style = encoder.parts, encoder.style
        self.cnns = nn.ModuleDict(
            {p.key: ConvDecoder(feat_dim, encoder.cnns[p.key], p.shape[0], style) for p in self.parts if p.is_image}
        )
        self.vector_parts = [p for p in self.parts if not p.is_image]
        vec_dim = sum(p.size for p in self.vector_parts)
        self.mlp = mlp(feat_dim, vec_dim, mlp_layers, mlp_units, style) if vec_dim else None

    def forward(self, feat: th.Tensor) -> dict[str, th.Tensor]:
        out = {key: cnn(feat) for key, cnn in self.cnns.items()}
        if self.mlp is not None:
            sizes = [p.size for p in self.vector_parts]
            for part, value in zip(self.vector_parts, self.mlp(feat).split(sizes, -1), strict=False):
                out[part.key] = value
        return out

    def nll(self, feat: th.Tensor, targets: Mapping[str, th.Tensor]) -> th.Tensor:
        """-log p(x | h, z) summed over each observation's dimensions and over entries."""
        params = self(feat)
        total = th.zeros((), device=feat.device)
        for part in self.parts:
            pred, target = params[part.key].float(), targets[part.key]
            event_dims = len(part.shape) if part.is_image else 1
            if part.dtype == "bool":
                nll = bernoulli_nll(pred, target).sum(tuple(range(-event_dims, 0)))
            else:
                nll = unit_gaussian_nll_sum(pred, target, event_dims)
            total = total + nll
        return total
