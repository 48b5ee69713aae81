"""Distribution maths used in the hot paths, written without ``torch.distributions``.

Every function works on raw network outputs (logits, means, raw standard deviations) so the
training step stays a short chain of fused tensor ops.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch as th
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


def sample_index(probs: th.Tensor) -> th.Tensor:
    """Class indices drawn from categoricals with probabilities ``probs`` (last axis, any positive
    scale), by inverting the CDF: the class is the number of cumulative probabilities below a
    uniform draw. One uniform per distribution, where Gumbel-max needs one per class and two
    logarithms."""
    cdf = probs.cumsum(-1)
    uniform = th.rand(*cdf.shape[:-1], 1, device=cdf.device, dtype=cdf.dtype) * cdf[..., -1:]
    return th.searchsorted(cdf, uniform).squeeze(-1)  # = (cdf < uniform).sum(-1), no boolean temporary


def one_hot(index: th.Tensor, classes: int, dtype: th.dtype, out: th.Tensor | None = None) -> th.Tensor:
    """``index`` as one-hot vectors of ``classes``, written into ``out`` when given."""
    if out is None:
        out = th.zeros(*index.shape, classes, device=index.device, dtype=dtype)
    else:
        out.zero_()
    return out.scatter_(-1, index.unsqueeze(-1), 1.0)


def sample_one_hot(logits: th.Tensor) -> th.Tensor:
    """A one-hot sample from ``Categorical(logits)`` along the last axis (see :func:`sample_index`)."""
    return one_hot(sample_index(logits.detach().softmax(-1)), logits.shape[-1], logits.dtype)


def mode_one_hot(logits: th.Tensor) -> th.Tensor:
    """The most likely class as a one-hot vector."""
    return one_hot(logits.argmax(-1), logits.shape[-1], logits.dtype)


def straight_through(sample: th.Tensor, logits: th.Tensor) -> th.Tensor:
    """Straight-through estimator (DreamerV2 paper, Algorithm 1).

    The forward value is the one-hot ``sample``; the backward pass uses the gradient of the
    class probabilities: ``sample + probs - sg(probs)``. Without a gradient to carry (imagination
    for REINFORCE runs without autograd) it is ``sample`` itself.
    """
    if not (logits.requires_grad and th.is_grad_enabled()):
        return sample
    probs = logits.softmax(-1)
    return sample + probs - probs.detach()


def categorical_kl(p_logits: th.Tensor, q_logits: th.Tensor) -> th.Tensor:
    """KL[p || q] of independent categoricals, summed over the last two axes (variables x classes)."""
    p_log = p_logits.log_softmax(-1)
    q_log = q_logits.log_softmax(-1)
    return (p_log.exp() * (p_log - q_log)).sum((-2, -1))


def kl_losses(
    post_logits: th.Tensor, prior_logits: th.Tensor, kl: Callable[[th.Tensor, th.Tensor], th.Tensor] = categorical_kl
) -> tuple[th.Tensor, th.Tensor]:
    """The two halves of the KL loss, per element (summed over the latent variables and classes),
    for ``kl`` (categorical by default; a latent's ``kl`` for others, :mod:`~sb3_dreamer.common.latents`).

    ``dyn = KL[sg(post) || prior]`` trains the prior (the dynamics predictor) towards the posterior;
    ``rep = KL[post || sg(prior)]`` regularises the posterior (the representation). Both have the
    value of ``KL[post || prior]``; they differ in where the gradient goes.
    """
    dyn = kl(post_logits.detach(), prior_logits)
    rep = kl(post_logits, prior_logits.detach())
    return dyn, rep


def batch_free_nats_kl(
    post_logits: th.Tensor,
    prior_logits: th.Tensor,
    free_nats: float = 0.0,
    kl: Callable[[th.Tensor, th.Tensor], th.Tensor] = categorical_kl,
) -> tuple[dict[str, th.Tensor], th.Tensor]:
    """DreamerV2's KL terms before their scales (paper Algorithm 2): ``dyn`` = ``KL[sg(post) || prior]``
    and ``rep`` = ``KL[post || sg(prior)]``, each averaged over the batch and then clipped below at
    ``free_nats``, as in danijar/dreamerv2 (``free_avg``).

    :return: ({"dyn": ..., "rep": ...}, the KL value per element for logging)
    """
    dyn, rep = kl_losses(post_logits, prior_logits, kl)
    terms = {"dyn": dyn.mean(), "rep": rep.mean()}
    if free_nats > 0.0:
        terms = {name: term.clamp(min=free_nats) for name, term in terms.items()}
    return terms, dyn.detach()


def free_nats_kl(
    post_stats: th.Tensor,
    prior_stats: th.Tensor,
    free_nats: float = 3.0,
    kl: Callable[[th.Tensor, th.Tensor], th.Tensor] = categorical_kl,
) -> tuple[dict[str, th.Tensor], th.Tensor]:
    """The plain KL term, no balancing: ``kl`` = ``max(free_nats, mean KL[post || prior])``, whose
    gradient trains prior and posterior alike (DreamerV1 Eq. 10 with free nats 3, Appendix A;
    PlaNet Eq. 3; danijar/dreamer clips the batch mean as here).

    :return: ({"kl": ...}, the KL value per element for logging)
    """
    value = kl(post_stats, prior_stats)
    return {"kl": value.mean().clamp(min=free_nats)}, value.detach()


def balanced_kl(
    post_logits: th.Tensor, prior_logits: th.Tensor, balance: float = 0.8, free_nats: float = 0.0
) -> tuple[th.Tensor, th.Tensor]:
    """KL balancing (DreamerV2 paper, Algorithm 2).

    ``balance * KL[sg(post) || prior] + (1 - balance) * KL[post || sg(prior)]``: with ``balance``
    = 0.8 the prior is trained four times faster towards the posterior than the posterior is
    regularised towards the prior. Free nats are applied to the batch mean, as in
    danijar/dreamerv2 (``free_avg``). DreamerV2 weighs the two :func:`batch_free_nats_kl` terms in
    its ``loss_scales`` instead; this is the same sum.

    :return: (the loss term, the unbalanced KL value per element for logging)
    """
    terms, value = batch_free_nats_kl(post_logits, prior_logits, free_nats)
    return balance * terms["dyn"] + (1.0 - balance) * terms["rep"], value


def step_free_bits_kl(
    post_logits: th.Tensor,
    prior_logits: th.Tensor,
    free_bits: float = 1.0,
    kl: Callable[[th.Tensor, th.Tensor], th.Tensor] = categorical_kl,
) -> tuple[dict[str, th.Tensor], th.Tensor]:
    """DreamerV3's KL terms before their scales (paper Eq. 5): ``dyn`` = ``max(free_bits,
    KL[sg(post) || prior])`` and ``rep`` = ``max(free_bits, KL[post || sg(prior)])``, the free bits
    clipping each time step (after summing over the latent variables) before the mean.

    :return: ({"dyn": ..., "rep": ...}, the KL value per element for logging)
    """
    dyn, rep = kl_losses(post_logits, prior_logits, kl)
    return {"dyn": dyn.clamp(min=free_bits).mean(), "rep": rep.clamp(min=free_bits).mean()}, dyn.detach()


def free_bits_kl(
    post_logits: th.Tensor,
    prior_logits: th.Tensor,
    dyn_scale: float = 0.5,
    rep_scale: float = 0.1,
    free_bits: float = 1.0,
) -> tuple[th.Tensor, th.Tensor]:
    """DreamerV3's KL loss (paper Eq. 5): ``dyn_scale max(1, KL[sg(post) || prior])
    + rep_scale max(1, KL[post || sg(prior)])``, the :func:`step_free_bits_kl` terms weighted.

    :return: (the loss term, the KL value per element for logging)
    """
    terms, value = step_free_bits_kl(post_logits, prior_logits, free_bits)
    return dyn_scale * terms["dyn"] + rep_scale * terms["rep"], value


def unimix_probs(logits: th.Tensor, unimix: float) -> th.Tensor:
    """``(1 - unimix) softmax(logits) + unimix / K``: DreamerV3's 1% uniform mix (paper Section 3,
    world model learning)."""
    probs = logits.softmax(-1)
    if unimix <= 0.0:
        return probs
    if probs.requires_grad:
        return (1.0 - unimix) * probs + unimix / logits.shape[-1]
    return probs.mul_(1.0 - unimix).add_(unimix / logits.shape[-1])


def unimix_logits(logits: th.Tensor, unimix: float) -> th.Tensor:
    """Logits of :func:`unimix_probs`: no class has zero probability, so KLs and log-probabilities
    stay finite. Identity for 0."""
    return logits if unimix <= 0.0 else th.log(unimix_probs(logits, unimix))


def symlog(x: th.Tensor) -> th.Tensor:
    """``sign(x) ln(|x| + 1)`` (DreamerV3 paper Eq. 1): compresses large magnitudes, keeps the sign."""
    return th.sign(x) * th.log1p(x.abs())


def symexp(x: th.Tensor) -> th.Tensor:
    """The inverse of :func:`symlog`: ``sign(x) (exp(|x|) - 1)``."""
    return th.sign(x) * th.expm1(x.abs())


def _two_hot_parts(x: th.Tensor, bins: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """The bins below and above ``x`` and the weight of the one above (see :func:`two_hot`)."""
    n = bins.shape[0]
    x = x.clamp(bins[0], bins[-1])
    above = th.searchsorted(bins, x.contiguous().unsqueeze(-1)).squeeze(-1).clamp(1, n - 1)
    below = above - 1
    w_above = (x - bins[below]) / (bins[above] - bins[below])
    return below, above, w_above


def two_hot(x: th.Tensor, bins: th.Tensor) -> th.Tensor:
    """Two-hot encoding of ``x`` on the sorted ``bins`` (DreamerV3 paper Eq. 9).

    The weight goes to the two bins around ``x``, in proportion to closeness; values outside the
    range put all their weight on the nearest end bin. Returns ``(*x.shape, len(bins))``.
    """
    below, above, w_above = _two_hot_parts(x, bins)
    target = th.zeros(*x.shape, bins.shape[0], dtype=x.dtype, device=x.device)
    target.scatter_(-1, below.unsqueeze(-1), (1.0 - w_above).unsqueeze(-1))
    target.scatter_add_(-1, above.unsqueeze(-1), w_above.unsqueeze(-1))
    return target


def two_hot_nll(log_probs: th.Tensor, x: th.Tensor, bins: th.Tensor) -> th.Tensor:
    """``-sum(two_hot(x, bins) * log_probs, -1)``, the cross-entropy of the two-hot target
    (DreamerV3 paper Eq. 10), reading only the two bins that carry weight."""
    below, above, w_above = _two_hot_parts(x, bins)
    lp_below = log_probs.gather(-1, below.unsqueeze(-1)).squeeze(-1)
    lp_above = log_probs.gather(-1, above.unsqueeze(-1)).squeeze(-1)
    return -((1.0 - w_above) * lp_below + w_above * lp_above)


def categorical_log_prob(logits: th.Tensor, one_hot: th.Tensor) -> th.Tensor:
    """log p(a) of a one-hot action under ``Categorical(logits)``."""
    return (logits.log_softmax(-1) * one_hot).sum(-1)


def categorical_entropy(logits: th.Tensor) -> th.Tensor:
    log_p = logits.log_softmax(-1)
    return -(log_p.exp() * log_p).sum(-1)


_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


class TanhGaussian:
    """A diagonal Gaussian squashed by ``tanh`` into [-1, 1] (the bounded actor for Box actions).

    ``mean`` and ``std`` parameterise the pre-tanh Gaussian. Densities are computed from the
    pre-tanh value ``x`` (exact even where ``tanh(x)`` rounds to +-1); :meth:`log_prob` recovers
    ``x`` with ``atanh`` only for actions that come from elsewhere (e.g. the replay). The squashed
    entropy has no closed form: use ``-log_prob_pre_tanh(x)`` of a reparameterised sample.
    """

    def __init__(self, mean: th.Tensor, std: th.Tensor) -> None:
        self.mean = mean
        self.std = std

    def rsample(self) -> tuple[th.Tensor, th.Tensor]:
        """A reparameterised sample: (action ``tanh(x)``, pre-tanh ``x``)."""
        x = self.mean + self.std * th.randn_like(self.mean)
        return th.tanh(x), x

    def mode(self) -> th.Tensor:
        return th.tanh(self.mean)

    def log_prob_pre_tanh(self, x: th.Tensor) -> th.Tensor:
        """log p(tanh(x)) = log N(x) - log |d tanh / dx|, with log(1 - tanh(x)^2) = 2 (log 2 - x - softplus(-2x))."""
        normal = -0.5 * ((x - self.mean) / self.std) ** 2 - self.std.log() - _LOG_SQRT_2PI
        log_det = 2.0 * (math.log(2.0) - x - F.softplus(-2.0 * x))
        return (normal - log_det).sum(-1)

    def log_prob(self, action: th.Tensor) -> th.Tensor:
        return self.log_prob_pre_tanh(th.atanh(action.clamp(-1.0 + 1e-6, 1.0 - 1e-6)))


def bernoulli_nll(logits: th.Tensor, target: th.Tensor) -> th.Tensor:
    """-log Bernoulli(target; sigmoid(logits)), elementwise."""
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none")


def unit_gaussian_nll(mean: th.Tensor, target: th.Tensor) -> th.Tensor:
    """-log N(target; mean, 1) without the constant, elementwise."""
    return 0.5 * (mean - target) ** 2


class _HalfSquaredError(th.autograd.Function):
    """``0.5 ||mean - target||^2`` over the trailing ``event_dims`` axes, keeping a single
    full-size temporary (the difference) in the forward pass and one in the backward pass, where
    elementwise ops with a sum would make seven (the image batch is the largest tensor of the step)."""

    @staticmethod
    def forward(ctx, mean: th.Tensor, target: th.Tensor, event_dims: int) -> th.Tensor:  # type: ignore[override]
        diff = mean - target
        ctx.save_for_backward(diff)
        ctx.event_dims = event_dims
        return 0.5 * th.linalg.vector_norm(diff, 2, tuple(range(-event_dims, 0))).square()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: th.Tensor) -> tuple[th.Tensor | None, th.Tensor | None, None]:  # type: ignore[override]
        (diff,) = ctx.saved_tensors
        grad_mean = diff * grad.reshape(*grad.shape, *(1,) * ctx.event_dims)
        grad_target = -grad_mean if ctx.needs_input_grad[1] else None
        return grad_mean if ctx.needs_input_grad[0] else None, grad_target, None


def unit_gaussian_nll_sum(mean: th.Tensor, target: th.Tensor, event_dims: int) -> th.Tensor:
    """:func:`unit_gaussian_nll` summed over the trailing ``event_dims`` axes, computed with fewer
    full-size temporaries (for images)."""
    return _HalfSquaredError.apply(mean, target, event_dims)
