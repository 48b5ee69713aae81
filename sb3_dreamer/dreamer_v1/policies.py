"""Policy aliases of DreamerV1 (SB3's names). One policy serves every supported space: it picks a
CNN for image entries and an MLP for vector entries of the observation."""

from sb3_dreamer.common.policies import CnnPolicy, DreamerPolicy, MlpPolicy, MultiInputPolicy

__all__ = ["CnnPolicy", "DreamerPolicy", "MlpPolicy", "MultiInputPolicy"]
