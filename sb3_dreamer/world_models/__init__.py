"""World Models: V (a VAE), M (an MDN-RNN) and C (a linear controller evolved by CMA-ES) (Ha & Schmidhuber, 2018)."""

from sb3_dreamer.world_models.policies import WorldModelsPolicy
from sb3_dreamer.world_models.world_models import WorldModels

__all__ = ["WorldModels", "WorldModelsPolicy"]
