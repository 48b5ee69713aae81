"""Named PlaNet model sizes: ``policy_kwargs`` for :class:`~sb3_dreamer.PlaNet` (``model_size=...``).

``default`` is the paper's (Appendix A): a 200-unit GRU, a 30-dimensional Gaussian state, 200-unit
MLPs for the reward model and the posterior/prior, CNN depth 32. ``small`` and ``tiny`` are CPU
sizes for vector tasks and tests.
"""

from __future__ import annotations

from typing import Any

from sb3_dreamer.common.presets import rssm_size

SIZES: dict[str, dict[str, Any]] = {
    "default": rssm_size(200, 200, 30, 2, 32),
    "small": rssm_size(128, 128, 16, 2, 16),
    "tiny": rssm_size(32, 32, 4, 1, 8),
}
#: ``PlaNet(env, preset=name)``: none yet.
PRESETS: dict[str, dict[str, Any]] = {}
CONFIGURATIONS: dict[str, dict[str, Any]] = {
    **{name: {"model_size": name} for name in SIZES},
    **{name: {"preset": name} for name in PRESETS},
}
DEFAULT_CONFIGURATION = "default"
