"""Updates that never write a non-finite step into the weights: ``GuardedUpdates._optimize``
clips and applies one loss's gradient only when it is finite, and stops training with an error
after :attr:`~GuardedUpdates.max_consecutive_skips` skipped updates in a row."""

from __future__ import annotations

import warnings
from typing import ClassVar

import torch as th
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm


class GuardedUpdates(OffPolicyAlgorithm):
    """The subclass sets ``_non_finite`` to ``[]`` before each update and calls :meth:`_skip_update`
    for an update it did not apply (``_skipped_updates`` and ``_consecutive_skips`` start at 0)."""

    _non_finite: list[str]
    _skipped_updates: int
    _consecutive_skips: int

    def _optimize(
        self, loss: th.Tensor, optimizer: th.optim.Optimizer, module: th.nn.Module, name: str, max_norm: float
    ) -> th.Tensor | None:
        """Clip and apply the gradient of ``loss``; return its norm, or ``None`` without touching
        the weights or the optimizer state when the loss or the gradient is not finite."""
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = th.nn.utils.clip_grad_norm_(module.parameters(), max_norm)
        if not th.isfinite(norm):  # a non-finite loss gives a non-finite norm too
            optimizer.zero_grad(set_to_none=True)
            self._non_finite.append(f"{name} loss {loss.item():.4g} (gradient norm {norm.item():.4g})")
            return None
        optimizer.step()
        if self.policy.weight_decay > 0.0:  # decoupled, lr-independent decay (danijar/dreamerv2)
            with th.no_grad():
                params = [p for group in optimizer.param_groups for p in group["params"]]
                th._foreach_mul_(params, 1.0 - self.policy.weight_decay)
        return norm

    #: Consecutive skipped gradient steps after which training stops with an error.
    max_consecutive_skips: ClassVar[int] = 10

    def _skip_update(self) -> None:
        self._skipped_updates += 1
        self._consecutive_skips += 1
        if self._consecutive_skips >= self.max_consecutive_skips:
            raise RuntimeError(
                f"{self._consecutive_skips} consecutive {type(self).__name__} updates had a non-finite loss or "
                f"gradient (last: {', '.join(self._non_finite)}); the parts affected were not updated. "
                " Check the environment's observations and rewards for extreme values, or lower the "
                "learning rates."
            )
        warnings.warn(
            f"Skipped a {type(self).__name__} update with a non-finite {', '.join(self._non_finite)}; "
            f"{self._skipped_updates} skipped so far (logged as train/skipped_updates).",
            RuntimeWarning,
            stacklevel=2,
        )
