"""What a user reads when a run learns nothing: does the world model predict the rewards and
terminals it sees, and how far ahead does its prior stay right?

Logged under ``train/`` by :meth:`~sb3_dreamer.common.algorithm.WorldModelAlgorithm.train` (docs/diagnostics.md).
Everything here runs without autograd on tensors the update computed anyway, except
:func:`open_loop_errors`, which rolls the prior forward and is run every ``open_loop_interval`` updates.
"""

from __future__ import annotations

import torch as th

from sb3_dreamer.common.rssm import RSSMState

#: Open-loop horizons (prior steps after the last posterior state) of :func:`open_loop_errors`.
OPEN_LOOP_HORIZONS = (1, 5, 15)


def masked_mean(values: th.Tensor, mask: th.Tensor) -> th.Tensor:
    """Mean of ``values`` where ``mask`` is set; NaN (not logged) when it is set nowhere."""
    mask = mask.to(values.dtype)
    total = mask.sum()
    return th.where(total > 0, (values * mask).sum() / total.clamp(min=1.0), th.full_like(total, float("nan")))


@th.no_grad()
def head_errors(
    reward_pred: th.Tensor, rewards: th.Tensor, continue_prob: th.Tensor, is_terminal: th.Tensor
) -> dict[str, th.Tensor]:
    """Errors of the reward and continue heads on the replayed steps, overall and where they matter.

    A reward head that predicts the mean reward everywhere has a small overall error on sparse
    rewards but a large one on the steps that carry them (``reward_error_nonzero``); a continue
    head that never predicts an end shows ``continue_error_terminal`` near 1.
    """
    reward_error = (reward_pred.float() - rewards).abs()
    continue_error = (continue_prob.float() - (1.0 - is_terminal)).abs()
    return {
        "reward_error": reward_error.mean(),
        "reward_error_nonzero": masked_mean(reward_error, rewards != 0),
        "continue_error": continue_error.mean(),
        "continue_error_terminal": masked_mean(continue_error, is_terminal > 0),
    }


@th.no_grad()
def open_loop_errors(
    world_model: th.nn.Module,
    inputs: dict[str, th.Tensor],
    prev_actions: th.Tensor,
    rewards: th.Tensor,
    is_first: th.Tensor,
    posterior: RSSMState,
    horizons: tuple[int, ...] = OPEN_LOOP_HORIZONS,
) -> dict[str, th.Tensor]:
    """Open-loop prediction error of the prior: from the posterior state at step ``c`` of each
    replayed sequence, imagine with the *real* actions and compare the decoded predictions with
    the real observations and rewards ``k`` steps later (the seeds' "predictive ability").

    ``c = T - 1 - max(horizons)`` (at least 0), so the model has seen ``c + 1`` real steps first.
    The prior's latents are its modes, so the check draws no random numbers: a run that logs it
    trains exactly as one that does not.
    Steps after an episode start inside the window are left out. Returns, per horizon ``k`` that
    fits the sequence, ``open_loop_image_nll_k`` (the decoder's negative log-likelihood of the whole
    observation, the units of ``train/reconstruction_loss``, which is the same error at ``k = 0``
    with the posterior) and ``open_loop_reward_error_k`` (mean absolute error).
    """
    length = prev_actions.shape[1]
    start = max(0, length - 1 - max(horizons))
    rssm = world_model.rssm
    state = RSSMState(*(x[:, start] for x in posterior))
    alive = th.ones_like(is_first[:, 0])
    metrics: dict[str, th.Tensor] = {}
    for k in range(1, min(max(horizons), length - 1 - start) + 1):
        t = start + k
        alive = alive * (1.0 - is_first[:, t])  # an episode that restarts inside the window ends the comparison
        state = rssm.img_step(state, prev_actions[:, t], sample=False)  # a_{t-1} leads to x_t
        if k in horizons:
            feat = state.feat
            nll = world_model.decoder.nll(feat, {key: value[:, t] for key, value in inputs.items()})
            reward_error = (world_model.reward(feat).float() - rewards[:, t]).abs()
            metrics[f"open_loop_image_nll_{k}"] = masked_mean(nll, alive > 0)
            metrics[f"open_loop_reward_error_{k}"] = masked_mean(reward_error, alive > 0)
    return metrics
