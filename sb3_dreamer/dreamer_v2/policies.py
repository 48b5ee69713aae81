"""Policy aliases of DreamerV2. One policy serves every supported space: it picks a CNN for
image entries and an MLP for vector entries of the observation."""

from sb3_dreamer.common.policies import DreamerPolicy

MlpPolicy = DreamerPolicy
CnnPolicy = DreamerPolicy
MultiInputPolicy = DreamerPolicy

__all__ = ["CnnPolicy", "DreamerPolicy", "MlpPolicy", "MultiInputPolicy"]
