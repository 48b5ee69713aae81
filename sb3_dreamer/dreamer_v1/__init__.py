from sb3_dreamer.dreamer_v1.dreamer_v1 import DreamerV1
from sb3_dreamer.dreamer_v1.policies import CnnPolicy, DreamerPolicy, MlpPolicy, MultiInputPolicy
from sb3_dreamer.dreamer_v1.sizes import SIZES

__all__ = ["SIZES", "CnnPolicy", "DreamerPolicy", "DreamerV1", "MlpPolicy", "MultiInputPolicy"]
