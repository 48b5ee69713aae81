"""Observation spaces read as parts: each ``Box`` entry (of a ``Dict``, or the whole space) is an
image (``C, H, W`` after its layout is worked out, bool/uint8/float) or a flat vector, and
:func:`preprocess` turns raw observations into the float inputs the encoders take."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first

#: Key under which a non-Dict observation is stored.
OBS_KEY = "obs"
#: The smallest image side the CNN accepts.
MIN_IMAGE_SIZE = 5


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
