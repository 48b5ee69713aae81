"""Named PlaNet model sizes: ``policy_kwargs`` for :class:`~sb3_dreamer.PlaNet` (``model_size=...``).

``default`` is the paper's (Appendix A): a 200-unit GRU, a 30-dimensional Gaussian state, 200-unit
MLPs for the reward model and the posterior/prior, CNN depth 32. ``small`` and ``tiny`` are CPU
sizes for vector tasks and tests.
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
    "default": _size(200, 200, 30, 2, 32),
    "small": _size(128, 128, 16, 2, 16),
    "tiny": _size(32, 32, 4, 1, 8),
}
#: ``PlaNet(env, preset=name)``: none yet.
PRESETS: dict[str, dict[str, Any]] = {}
CONFIGURATIONS: dict[str, dict[str, Any]] = {
    **{name: {"model_size": name} for name in SIZES},
    **{name: {"preset": name} for name in PRESETS},
}
DEFAULT_CONFIGURATION = "default"
