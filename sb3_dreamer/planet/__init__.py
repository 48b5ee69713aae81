"""PlaNet: an RSSM with Gaussian latents and a cross-entropy-method planner (Hafner et al., 2019)."""

from sb3_dreamer.planet.planet import PlaNet
from sb3_dreamer.planet.planner import CEM
from sb3_dreamer.planet.policies import PlaNetPolicy
from sb3_dreamer.planet.sizes import CONFIGURATIONS, DEFAULT_CONFIGURATION, PRESETS, SIZES

__all__ = ["CEM", "CONFIGURATIONS", "DEFAULT_CONFIGURATION", "PRESETS", "SIZES", "PlaNet", "PlaNetPolicy"]
