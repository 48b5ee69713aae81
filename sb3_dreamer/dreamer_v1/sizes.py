"""Named DreamerV1 model sizes: ``policy_kwargs`` for :class:`~sb3_dreamer.DreamerV1` (``model_size=...``).

``default`` is danijar/dreamer's (the paper's code): a 200-unit GRU, a 30-dimensional Gaussian
``z``, 400-unit MLPs (one depth, 3, for every head: the code uses 2 for the reward, 3 for the
value and 4 for the actor) and CNN depth 32. ``small`` is a CPU size with DreamerV2 ``small``'s
widths, and ``tiny`` one for tests and toy tasks.
"""

from __future__ import annotations

from typing import Any

from sb3_dreamer.common.presets import rssm_size

SIZES: dict[str, dict[str, Any]] = {
    "default": rssm_size(200, 400, 30, 3, 32),
    "small": rssm_size(128, 128, 16, 2, 16),
    "tiny": rssm_size(64, 64, 8, 2, 8),
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
