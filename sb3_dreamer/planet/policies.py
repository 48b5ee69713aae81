"""PlaNet's policy: the world-model half of :class:`~sb3_dreamer.common.policies.DreamerPolicy`
(encoder, RSSM with Gaussian latents, decoder, reward head) and a CEM planner instead of an
actor; one optimizer."""

from __future__ import annotations

from typing import Any

import torch as th
from stable_baselines3.common.type_aliases import Schedule

from sb3_dreamer.common.policies import DreamerPolicy
from sb3_dreamer.common.rssm import RSSMState
from sb3_dreamer.planet.planner import CEM


class PlaNetPolicy(DreamerPolicy):
    """:param planning_horizon: H, 12 (paper)
    :param candidates: J, action sequences per CEM iteration, 1000 (paper)
    :param iterations: I, CEM iterations, 10 (paper)
    :param top_k: K, elite sequences that refit the belief, 100 (paper)
    :param kwargs: :class:`~sb3_dreamer.common.policies.DreamerPolicy`'s (sizes, latent, optimizer)

    ``deterministic`` acting plans with the prior's modes and a fixed random stream, so the same
    state gives the same action; otherwise the latents are sampled, as in the paper's planner."""

    optimizer_learning_rates = {"wm_optimizer": "learning_rate"}

    @classmethod
    def initial_learning_rates(cls, rates: dict[str, float]) -> dict[str, Any]:
        return {}  # one optimizer, whose rate comes as lr_schedule

    def __init__(
        self,
        *args: Any,
        planning_horizon: int = 12,
        candidates: int = 1000,
        iterations: int = 10,
        top_k: int = 100,
        **kwargs: Any,
    ) -> None:
        self.planner = CEM(planning_horizon, candidates, iterations, top_k)  # before _build, which may plan
        super().__init__(*args, **kwargs)

    def _build(self, lr_schedule: Schedule) -> None:
        self._build_world_model()
        self._init_weights()
        self.wm_optimizer = self._optimizer(self.world_model, lr_schedule(1), self.world_model_optimizer_kwargs)

    def act(self, state: RSSMState, deterministic: bool = False) -> th.Tensor:
        generator = None
        if deterministic:
            generator = th.Generator(device=state.deter.device)
            generator.manual_seed(0)
        return self.planner.plan(self.world_model, state, self.action_dim, self.discrete, generator, not deterministic)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            planning_horizon=self.planner.horizon,
            candidates=self.planner.candidates,
            iterations=self.planner.iterations,
            top_k=self.planner.top_k,
        )
        data.pop("actor_lr", None)
        data.pop("critic_lr", None)
        return data


MlpPolicy = CnnPolicy = MultiInputPolicy = PlaNetPolicy
POLICY_ALIASES = {
    name: PlaNetPolicy for name in ("PlaNetPolicy", "DreamerPolicy", "MlpPolicy", "CnnPolicy", "MultiInputPolicy")
}
