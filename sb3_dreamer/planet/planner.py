"""The cross-entropy method over action sequences in latent space (PlaNet paper, Sec. 3
"Planning algorithm" and Algorithm 2 of its appendix).

From the posterior state of the last observation, ``candidates`` action sequences of length
``horizon`` are drawn from a belief ``q(a_{t:t+H})`` (independent Gaussians per step, or for
Discrete actions categoricals), each is rolled out by the RSSM's prior and scored by the sum of
its predicted mean rewards; the ``top_k`` best refit the belief, ``iterations`` times; the plan's
first action is taken. Every candidate of every env is one row of one batch, so a plan is
``iterations x horizon`` batched prior steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch as th
from torch import nn

from sb3_dreamer.common.rssm import RSSMState


@dataclass(frozen=True)
class CEM:
    """The planner's knobs (PlaNet's defaults: H = 12, J = 1000, I = 10, K = 100)."""

    horizon: int = 12
    candidates: int = 1000
    iterations: int = 10
    top_k: int = 100
    min_std: float = 0.0  # a floor on the Gaussian belief's std (0: the paper's plain refit)

    def __post_init__(self) -> None:
        for name in ("horizon", "candidates", "iterations", "top_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.top_k > self.candidates:
            raise ValueError(f"top_k ({self.top_k}) must not exceed candidates ({self.candidates}).")

    @th.no_grad()
    def plan(
        self,
        world_model: nn.Module,
        state: RSSMState,
        action_dim: int,
        discrete: bool,
        generator: th.Generator | None = None,
        sample_latents: bool = True,
    ) -> th.Tensor:
        """The first action of the plan for each state in ``state`` (``(N, ...)``): the belief's
        mean in [-1, 1] (Box) or a one-hot of the most probable action (Discrete), ``(N, A)``."""
        rssm, n, c, h = world_model.rssm, len(state.deter), self.candidates, self.horizon
        device = state.deter.device
        start = RSSMState(*(x.repeat_interleave(c, 0) for x in state))  # (N * C, ...): row n * C + j
        if discrete:
            probs = th.full((n, h, action_dim), 1.0 / action_dim, device=device)
        else:
            mean, std = th.zeros(n, h, action_dim, device=device), th.ones(n, h, action_dim, device=device)
        for _ in range(self.iterations):
            if discrete:
                index = th.multinomial(probs.reshape(-1, action_dim), c, replacement=True, generator=generator)
                index = index.reshape(n, h, c).permute(0, 2, 1)  # (N, C, H)
                actions = nn.functional.one_hot(index, action_dim).float()
            else:
                noise = th.randn(n, c, h, action_dim, device=device, generator=generator)
                actions = (mean[:, None] + std[:, None] * noise).clamp(-1.0, 1.0)  # (N, C, H, A)
            returns = self._rollout(world_model, rssm, start, actions.reshape(n * c, h, action_dim), sample_latents)
            elite = returns.reshape(n, c).topk(self.top_k, dim=1).indices  # (N, K)
            best = actions.gather(1, elite[:, :, None, None].expand(-1, -1, h, action_dim))  # (N, K, H, A)
            if discrete:
                probs = best.mean(1)  # the elites' action frequencies per step
            else:
                mean, std = best.mean(1), best.std(1, unbiased=False).clamp(min=self.min_std)
        if discrete:
            return nn.functional.one_hot(probs[:, 0].argmax(-1), action_dim).float()
        return mean[:, 0]

    def _rollout(
        self, world_model: nn.Module, rssm: nn.Module, start: RSSMState, actions: th.Tensor, sample: bool
    ) -> th.Tensor:
        """Sum of predicted mean rewards ``r_{t+1}`` over the horizon for each row of ``actions`` (M, H, A)."""
        state, total = start, th.zeros(len(actions), device=actions.device)
        for t in range(actions.shape[1]):
            state = rssm.img_step(state, actions[:, t], sample=sample)
            total = total + world_model.reward(state.feat).float()
        return total
