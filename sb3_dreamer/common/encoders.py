"""Encoders and decoders chosen from the observation parts: a CNN for images of any size from 5x5
up (DreamerV3's "same" layout, or DreamerV1/V2's 64x64 "valid" one), an MLP over all vectors, both
for ``Dict`` spaces; and the decoder's likelihoods of each part."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch as th
from torch import nn

from sb3_dreamer.common.distributions import bernoulli_nll, unit_gaussian_nll_sum
from sb3_dreamer.common.networks import MLP, V2_STYLE, NetStyle, activation, dense, mlp
from sb3_dreamer.common.observations import ObsPart


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
