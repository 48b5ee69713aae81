"""World Models (Ha & Schmidhuber, "Recurrent World Models Facilitate Policy Evolution", NeurIPS 2018)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback
from stable_baselines3.common.utils import safe_mean

from sb3_dreamer.common.policies import check_spaces
from sb3_dreamer.world_models.policies import POLICY_ALIASES, WorldModelsPolicy
from sb3_dreamer.world_models.stages import Rollouts, collect, evolve_generation, train_rnn, train_vae

CONTROLLER_TRAINING = ("real", "dream")


class WorldModels(BaseAlgorithm):
    """
    World Models: V, a VAE, compresses each frame into ``z``; M, an MDN-RNN, learns to predict
    the next ``z``; C, a linear controller on ``[z, h]``, is optimised by CMA-ES, in the real
    environment or entirely inside M's dream (paper Sec. 2 and 4). One :meth:`learn` runs the
    stages in order: random rollouts -> V -> M -> CMA-ES generations, logging each under ``train/``.

    Paper: https://arxiv.org/abs/1803.10122 (NeurIPS 2018 version: arXiv:1809.01999).

    :param env: The environment (an id, ``Env`` or ``VecEnv``); its observation needs an image
    :param policy: ``"CnnPolicy"`` (:class:`WorldModelsPolicy`)
    :param random_steps: Env steps of uniformly random play that V and M learn from, 10000
        (the paper: 10,000 rollouts of CarRacing; scaled to this budget)
    :param vae_epochs: Passes of V over those frames, 10 (paper code)
    :param vae_batch_size: 100 (paper code)
    :param kl_tolerance: V's KL is floored at ``kl_tolerance * z_size`` nats, 0.5 (paper code)
    :param rnn_epochs: Passes of M over the sequences, 20 (paper code)
    :param rnn_batch_size: 100 (paper code)
    :param rnn_sequence_length: 100 (paper code: 999 for CarRacing; shorter windows here)
    :param controller_training: ``"real"``: each candidate's fitness is its mean return in the
        environment (paper, CarRacing); ``"dream"``: in M's dream at ``temperature`` (paper, Doom)
    :param population_size: CMA-ES population, 16 (paper 64)
    :param rollouts_per_candidate: Episodes per fitness, 4 (paper 16)
    :param sigma0: CMA-ES's initial step size, 0.1 (paper code)
    :param temperature: tau of the dream, 1.15 (paper, Doom)
    :param dream_length: Steps of a dream episode (it may end earlier through M's done head), 1000
    :param max_episode_steps: Real episodes are cut after this many steps, 1000
    :param generations: Stop after this many CMA-ES generations (``None``: when the env-step budget
        is spent, which dream training barely touches, so set it with ``"dream"``)
    :param policy_kwargs: :class:`WorldModelsPolicy`'s sizes (``z_size`` 32, ``hidden_size`` 256, ...)
    :param stats_window_size: Episodes averaged in ``rollout/`` logs
    :param tensorboard_log: TensorBoard log folder
    :param verbose: 0 silent, 1 training info
    :param seed: Seed of python, numpy, torch, the env and CMA-ES
    :param device: ``"auto"``, ``"cpu"`` or ``"cuda"``
    :param _init_setup_model: Whether to build the networks at construction

    The controller taken after each generation is CMA-ES's mean (``xfavorite``), whose fitness is
    logged as ``rollout/ep_rew_mean`` from real episodes. A candidate whose fitness is not finite
    is ranked last and counted in ``train/rejected_candidates``.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = POLICY_ALIASES
    policy: WorldModelsPolicy

    def __init__(
        self,
        env: GymEnv | str | None = None,
        policy: str | type[WorldModelsPolicy] = "CnnPolicy",
        random_steps: int = 10_000,
        vae_epochs: int = 10,
        vae_batch_size: int = 100,
        kl_tolerance: float = 0.5,
        rnn_epochs: int = 20,
        rnn_batch_size: int = 100,
        rnn_sequence_length: int = 100,
        controller_training: str = "real",
        population_size: int = 16,
        rollouts_per_candidate: int = 4,
        sigma0: float = 0.1,
        temperature: float = 1.15,
        dream_length: int = 1000,
        max_episode_steps: int = 1000,
        generations: int | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        if isinstance(env, str) and env in self.policy_aliases:  # SB3's order: WorldModels("CnnPolicy", env)
            env, policy = policy, env  # type: ignore[assignment]
        if controller_training not in CONTROLLER_TRAINING:
            raise ValueError(f"controller_training must be one of {CONTROLLER_TRAINING}, got {controller_training!r}.")
        if hasattr(env, "observation_space"):
            check_spaces(env.observation_space, env.action_space, policy_kwargs)  # type: ignore[union-attr]
        super().__init__(
            policy,
            env,  # type: ignore[arg-type]
            learning_rate=0.0,  # each part has its own (policy_kwargs vae_lr, rnn_lr)
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            seed=seed,
            supported_action_spaces=(spaces.Discrete, spaces.Box),
        )
        self.random_steps, self.vae_epochs, self.vae_batch_size = random_steps, vae_epochs, vae_batch_size
        self.kl_tolerance, self.rnn_epochs, self.rnn_batch_size = kl_tolerance, rnn_epochs, rnn_batch_size
        self.rnn_sequence_length, self.controller_training = rnn_sequence_length, controller_training
        self.population_size, self.rollouts_per_candidate, self.sigma0 = population_size, rollouts_per_candidate, sigma0
        self.temperature, self.dream_length, self.max_episode_steps = temperature, dream_length, max_episode_steps
        self.generations = generations
        self.models_trained = False  # V and M are trained once, on the random rollouts
        self.rejected_candidates = 0
        self._es: Any = None
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        self.set_random_seed(self.seed)
        self.policy = self.policy_class(self.observation_space, self.action_space, **self.policy_kwargs).to(self.device)

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "policy.vae_optimizer", "policy.rnn_optimizer"], []

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_es"]

    def learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "WorldModels",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> WorldModels:
        """Random rollouts, V, M (once per model), then CMA-ES generations until ``total_timesteps``
        env steps (or ``generations``). Every real env step counts and calls the callbacks."""
        import cma

        total, callback = self._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)
        callback.on_training_start(locals(), globals())
        if not self.models_trained:
            data = collect(self, self.random_steps, callback, None)
            self._record_stage("random rollouts", {"random_steps": len(data.rewards), "episodes": data.episodes})
            self._record_stage("V (VAE)", train_vae(self, data))
            self._record_stage("M (MDN-RNN)", train_rnn(self, data))
            self.models_trained = True
        if self._es is None:
            options = {"popsize": self.population_size, "seed": (self.seed or 0) + 1, "verbose": -9}
            self._es = cma.CMAEvolutionStrategy(self.policy.controller.vector().cpu().numpy(), self.sigma0, options)
        generation = 0
        while self.num_timesteps < total and (self.generations is None or generation < self.generations):
            self._update_current_progress_remaining(self.num_timesteps, total)
            metrics = evolve_generation(self, self._es, callback)
            if metrics is None:  # a callback asked to stop
                break
            generation += 1
            self._n_updates += 1
            for key, value in metrics.items():
                self.logger.record(f"train/{key}", value)
            self.logger.record("train/rejected_candidates", self.rejected_candidates)
            if self.ep_info_buffer:
                self.logger.record("rollout/ep_rew_mean", safe_mean([ep["r"] for ep in self.ep_info_buffer]))
            if log_interval and generation % log_interval == 0:
                self.logger.record("time/total_timesteps", self.num_timesteps)
                self.logger.record("time/generations", self._n_updates)
                self.logger.dump(step=self.num_timesteps)
        callback.on_training_end()
        return self

    def _record_stage(self, name: str, metrics: dict[str, float]) -> None:
        if self.verbose:
            print(f"World Models: {name} done: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
        for key, value in metrics.items():
            self.logger.record(f"train/{key}", value)
        self.logger.dump(step=self.num_timesteps)

    def predict(  # type: ignore[override]
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        return self.policy.predict(observation, state, episode_start, deterministic)


__all__ = ["CONTROLLER_TRAINING", "Rollouts", "WorldModels"]
