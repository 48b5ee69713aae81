"""Optuna search spaces for rl-zoo3's ``-optimize``: the knobs that moved learning in the
MinAtar-100k ablation (replay ratio, learning rates, LayerNorm) and the loss scales, each
sampled under the constructor argument's own name."""

from __future__ import annotations

from typing import Any


def _common(trial: Any) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-3, log=True),
        "actor_learning_rate": trial.suggest_float("actor_learning_rate", 3e-5, 3e-4, log=True),
        "critic_learning_rate": trial.suggest_float("critic_learning_rate", 5e-5, 5e-4, log=True),
        "imagination_horizon": trial.suggest_categorical("imagination_horizon", [10, 15]),
        "gamma": trial.suggest_categorical("gamma", [0.99, 0.995, 0.999]),
    }


def sample_dreamerv2(trial: Any, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    return {
        **_common(trial),
        "train_freq": trial.suggest_categorical("train_freq", [1, 2, 4, 8]),
        "kl_scale": trial.suggest_categorical("kl_scale", [0.1, 0.3, 1.0]),
        "entropy_coef": trial.suggest_float("entropy_coef", 1e-4, 1e-2, log=True),
    }


def sample_dreamerv3(trial: Any, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    return {
        **_common(trial),
        "train_ratio": trial.suggest_categorical("train_ratio", [64.0, 128.0, 256.0, 512.0]),
    }


def sample_dreamerv1(trial: Any, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    return {
        **_common(trial),
        "train_ratio": trial.suggest_categorical("train_ratio", [50.0, 125.0, 250.0]),
        "free_nats": trial.suggest_categorical("free_nats", [1.0, 3.0]),
        "exploration_noise": trial.suggest_float("exploration_noise", 0.1, 0.5),
    }


SAMPLERS = {"dreamerv1": sample_dreamerv1, "dreamerv2": sample_dreamerv2, "dreamerv3": sample_dreamerv3}
