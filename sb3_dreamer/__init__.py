"""sb3-dreamer: Dreamer world-model agents as Stable-Baselines3 algorithms."""

from sb3_dreamer.common.buffers import SequenceReplayBuffer
from sb3_dreamer.common.files import VERSION
from sb3_dreamer.common.policies import DreamerPolicy
from sb3_dreamer.dreamer_v1 import DreamerV1
from sb3_dreamer.dreamer_v2 import DreamerV2
from sb3_dreamer.dreamer_v3 import DreamerV3
from sb3_dreamer.envs import register_envs
from sb3_dreamer.planet import PlaNet
from sb3_dreamer.world_models import WorldModels

register_envs()

__version__ = VERSION

__all__ = [
    "DreamerPolicy",
    "DreamerV1",
    "DreamerV2",
    "DreamerV3",
    "PlaNet",
    "SequenceReplayBuffer",
    "WorldModels",
    "__version__",
    "register_envs",
]
