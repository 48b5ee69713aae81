"""Named DreamerV1 model sizes: ``policy_kwargs`` for :class:`~sb3_dreamer.DreamerV1` (``model_size=...``).

``default`` is danijar/dreamer's (the paper's code): a 200-unit GRU, a 30-dimensional Gaussian
``z``, 400-unit MLPs (one depth, 3, for every head: the code uses 2 for the reward, 3 for the
value and 4 for the actor) and CNN depth 32. ``small`` is a CPU size with DreamerV2 ``small``'s
widths, and ``tiny`` one for tests and toy tasks.
"""

from __future__ import annotations

from typing import Any


def _size(deter: int, units: int, stoch: int, layers: int, depth: int) -> dict[str, Any]:
    return {
        "deter_size": deter,
        "hidden_size": deter,
        "stoch_size": stoch,
        "mlp_units": units,
        "mlp_layers": layers,
        "cnn_depth": depth,
    }


SIZES: dict[str, dict[str, Any]] = {
    "default": _size(200, 400, 30, 3, 32),
    "small": _size(128, 128, 16, 2, 16),
    "tiny": _size(64, 64, 8, 2, 8),
}

#: ``DreamerV1(env, preset=name)``: none yet (no configuration for small budgets has been measured).
PRESETS: dict[str, dict[str, Any]] = {}

#: Every named configuration in one shape, constructor arguments by name, as in ``dreamer_v2.sizes``.
CONFIGURATIONS: dict[str, dict[str, Any]] = {
    **{name: {"model_size": name} for name in SIZES},
    **{name: {"preset": name} for name in PRESETS},
}
#: The configuration of the class defaults.
DEFAULT_CONFIGURATION = "default"
