from sb3_dreamer.dreamer_v2.dreamer_v2 import DreamerV2
from sb3_dreamer.dreamer_v2.policies import CnnPolicy, DreamerPolicy, MlpPolicy, MultiInputPolicy

__all__ = ["CnnPolicy", "DreamerPolicy", "DreamerV2", "MlpPolicy", "MultiInputPolicy"]
