"""Named presets: sets of constructor arguments an algorithm takes as ``preset="name"``.

A preset replaces the *defaults* of the arguments it names; arguments the caller passes explicitly
always win, and ``policy_kwargs`` are merged key by key (the caller's keys win), so
``DreamerV2(env, preset="minatar-100k", learning_rate=1e-4)`` is the preset with one change.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., None])


def merge_policy_kwargs(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge ``policy_kwargs`` layers, later ones winning; the optimizer dicts are merged key by
    key (so ``{"optimizer_kwargs": {"betas": ...}}`` keeps an ``eps`` set below it) and copied."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if key.endswith("optimizer_kwargs") and isinstance(value, dict):
                merged[key] = {**merged.get(key, {}), **value}
            else:
                merged[key] = value
    return merged


def check_preset(name: str, presets: Mapping[str, Mapping[str, Any]], algorithm: str) -> Mapping[str, Any]:
    """The arguments of preset ``name``, or ``ValueError`` listing the valid names."""
    if name not in presets:
        raise ValueError(f"Unknown {algorithm} preset {name!r}; choose from {sorted(presets)} (or preset=None).")
    return presets[name]


def with_presets(presets: Mapping[str, Mapping[str, Any]]) -> Callable[[F], F]:
    """Decorate an algorithm's ``__init__`` (which must take a ``preset`` argument) so that
    ``preset=name`` fills every argument of that preset the call did not pass itself."""

    def decorate(init: F) -> F:
        signature = inspect.signature(init)

        @functools.wraps(init)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
            bound = signature.bind(self, *args, **kwargs)
            name = bound.arguments.get("preset")
            if name is not None:
                values = check_preset(name, presets, type(self).__name__)
                for key, value in values.items():
                    if key == "policy_kwargs":
                        bound.arguments[key] = merge_policy_kwargs(value, bound.arguments.get(key))
                    elif key not in bound.arguments:  # passed explicitly: the caller's value wins
                        bound.arguments[key] = copy.deepcopy(value)
            init(*bound.args, **bound.kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def rssm_size(deter: int, units: int, stoch: int, layers: int, depth: int) -> dict[str, Any]:
    """``policy_kwargs`` widths of a model size: a ``deter``-unit GRU (and as wide a hidden layer
    before it), ``stoch`` latent dimensions, ``layers`` x ``units`` MLPs, CNN depth ``depth``."""
    return {
        "deter_size": deter,
        "hidden_size": deter,
        "stoch_size": stoch,
        "mlp_units": units,
        "mlp_layers": layers,
        "cnn_depth": depth,
    }
