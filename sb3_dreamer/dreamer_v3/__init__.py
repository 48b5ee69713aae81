from sb3_dreamer.dreamer_v3.dreamer_v3 import DreamerV3
from sb3_dreamer.dreamer_v3.policies import CnnPolicy, DreamerPolicy, MlpPolicy, MultiInputPolicy
from sb3_dreamer.dreamer_v3.sizes import SIZES

__all__ = ["SIZES", "CnnPolicy", "DreamerPolicy", "DreamerV3", "MlpPolicy", "MultiInputPolicy"]
