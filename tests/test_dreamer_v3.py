"""DreamerV3's own maths against hand-computed values, and its configuration. The space, save/load
and SB3 tests shared with DreamerV2 run on both algorithms (the ``algo`` fixture)."""

import math

import numpy as np
import pytest
import torch as th
from conftest import TINY, fast
from envs import SpaceEnv
from gymnasium import spaces

from sb3_dreamer import DreamerV2, DreamerV3
from sb3_dreamer.common.algorithm import train_schedule
from sb3_dreamer.common.behavior import ReturnNormalizer
from sb3_dreamer.common.distributions import (
    categorical_kl,
    free_bits_kl,
    symexp,
    symlog,
    two_hot,
    two_hot_nll,
    unimix_logits,
)
from sb3_dreamer.common.networks import V3_STYLE, ScalarHead
from sb3_dreamer.dreamer_v3 import SIZES


def test_symlog_symexp_hand_values():
    x = th.tensor([0.0, math.e - 1.0, -(math.e - 1.0), math.e**3 - 1.0])
    assert symlog(x).tolist() == pytest.approx([0.0, 1.0, -1.0, 3.0], abs=1e-6)
    wide = th.tensor([-1e6, -3.5, -1e-3, 0.0, 2e-4, 7.0, 1e6], dtype=th.float64)
    assert th.allclose(symexp(symlog(wide)), wide, rtol=1e-12, atol=0.0)
    assert symlog(th.tensor(1e6)).item() == pytest.approx(math.log(1e6 + 1))  # compressed, sign kept


def test_two_hot_hand_values():
    bins = th.tensor([0.0, 2.5, 5.0, 7.5, 10.0])
    assert two_hot(th.tensor(5.5), bins).tolist() == pytest.approx([0, 0, 0.8, 0.2, 0])  # hand-computed
    assert two_hot(th.tensor(7.5), bins).tolist() == pytest.approx([0, 0, 0, 1, 0])  # on a bin: one-hot
    assert two_hot(th.tensor(0.0), bins).tolist() == pytest.approx([1, 0, 0, 0, 0])
    # outside the range: all the weight on the nearest end bin
    assert two_hot(th.tensor([-3.0, 12.0]), bins).tolist() == [[1, 0, 0, 0, 0], [0, 0, 0, 0, 1]]
    x = th.tensor([[0.1, 3.3], [9.99, 6.25]])
    encoded = two_hot(x, bins)
    assert encoded.shape == (2, 2, 5)
    assert th.allclose(encoded.sum(-1), th.ones(2, 2))
    assert th.allclose((encoded * bins).sum(-1), x)  # decoding inverts encoding inside the range


def test_two_hot_nll_reads_only_the_two_weighted_bins():
    """The gather form equals the dense cross-entropy against :func:`two_hot`, in and out of range."""
    bins = th.tensor([0.0, 2.5, 5.0, 7.5, 10.0])
    x = th.tensor([5.5, 7.5, 0.0, -3.0, 12.0, 9.99])
    log_probs = th.randn(6, 5).log_softmax(-1)
    dense = -(two_hot(x, bins) * log_probs).sum(-1)
    assert th.allclose(two_hot_nll(log_probs, x, bins), dense, atol=1e-6)
    # 5.5: 0.8 on bin 2, 0.2 on bin 3 (hand-computed)
    assert two_hot_nll(log_probs, x, bins)[0].item() == pytest.approx(
        -(0.8 * log_probs[0, 2] + 0.2 * log_probs[0, 3]).item(), rel=1e-6
    )


def test_two_hot_head_starts_at_zero_and_decodes_in_symlog_space():
    head = ScalarHead(8, 1, 16, V3_STYLE, bins=255)
    head.zero_output_()
    feat = th.randn(5, 8)
    assert head.predict(feat).abs().max() < 1e-5  # zero-initialised output layer: uniform bins, mean 0
    assert head.support[127] == 0.0 and head.support[0] == -20.0 and head.support[-1] == 20.0
    target = th.tensor([-250.0, 0.0, 0.37, 1234.5, 3e9])  # the last lies beyond symexp(20) ~ 4.85e8
    logits = th.log(two_hot(symlog(target), head.support) + 1e-12)
    decoded = head.mean(logits)
    inside = target.abs() < math.expm1(20.0)
    assert th.allclose(decoded[inside], target[inside], rtol=1e-4, atol=1e-4)
    assert decoded[-1].item() == pytest.approx(math.expm1(20.0), rel=1e-4)  # clipped to the last bin
    # the loss is the cross-entropy against the two-hot target: minimal at those logits
    nll = head.nll(logits, target)
    assert th.all(nll <= head.nll(th.zeros_like(logits), target))


def test_unimix_floor():
    logits = th.tensor([100.0, 0.0, 0.0, 0.0])
    probs = unimix_logits(logits, 0.01).exp()
    assert probs.tolist() == pytest.approx([0.99 + 0.0025, 0.0025, 0.0025, 0.0025], abs=1e-6)
    assert th.equal(unimix_logits(logits, 0.0), logits)
    # the RSSM's prior and posterior carry the mix, so no class falls below 1% / classes
    model = DreamerV3(SpaceEnv(spaces.Box(-1, 1, (3,), np.float32), spaces.Discrete(2)), policy_kwargs=TINY)
    rssm = model.policy.world_model.rssm
    prior = rssm.prior(th.randn(7, rssm.deter_size) * 100)
    assert prior.exp().min() >= 0.01 / rssm.classes * (1 - 1e-4)
    assert th.allclose(prior.exp().sum(-1), th.ones(7, rssm.stoch_size))


def test_free_bits_clip_each_step_before_the_mean():
    # two time steps with KL 0.5 (under the free bit) and 2.0 (over it)
    post = th.log(th.tensor([[[0.5, 0.5]], [[0.5, 0.5]]]))
    # KL[(.5, .5) || (q, 1 - q)] = .5 ln(.25 / (q (1 - q))): solve for q at KL 0.5 and 2.0
    prior_probs = []
    for kl in (0.5, 2.0):
        q = (1 - math.sqrt(1 - math.exp(-2 * kl))) / 2
        prior_probs.append([[q, 1 - q]])
    prior = th.log(th.tensor(prior_probs)).requires_grad_()
    post = post.clone().requires_grad_()
    assert categorical_kl(post, prior).tolist() == pytest.approx([0.5, 2.0], abs=1e-5)
    loss, value = free_bits_kl(post, prior, dyn_scale=0.5, rep_scale=0.1, free_bits=1.0)
    # per step: 0.5 * mean(max(1, .5), max(1, 2)) + 0.1 * the same = 0.6 * 1.5 (a batch-mean clip would give 0.75)
    assert loss.item() == pytest.approx(0.9, abs=1e-5)
    assert value.tolist() == pytest.approx([0.5, 2.0], abs=1e-5)
    loss.backward()
    assert prior.grad[0].abs().max() == 0 and post.grad[0].abs().max() == 0  # under the free bit: no gradient
    ref_prior, ref_post = prior.detach().clone().requires_grad_(), post.detach().clone().requires_grad_()
    categorical_kl(ref_post, ref_prior)[1].backward()
    assert th.allclose(prior.grad[1], 0.5 * 0.5 * ref_prior.grad[1], atol=1e-6)  # dyn trains the prior
    assert th.allclose(post.grad[1], 0.1 * 0.5 * ref_post.grad[1], atol=1e-6)  # rep regularises the posterior


def test_return_normalizer_hand_values():
    norm = ReturnNormalizer()
    returns = th.arange(101.0)  # 5th percentile 5, 95th 95
    norm.update(returns, decay=0.99)
    assert (norm.low.item(), norm.high.item()) == pytest.approx((0.05, 0.95))
    assert norm.scale().item() == 1.0  # a range under 1 is not amplified
    norm.update(returns, decay=0.99)
    assert (norm.low.item(), norm.high.item()) == pytest.approx((5 * 0.0199, 95 * 0.0199))
    for _ in range(3000):
        norm.update(returns, decay=0.99)
    assert norm.scale().item() == pytest.approx(90.0, rel=1e-4)


@pytest.mark.parametrize(
    "ratio, replayed, n_envs, expected",
    [
        (64, 1024, 1, (16, 1)),  # the paper's Atari ratio at 16 x 64: one update every 16 steps
        (1024, 1024, 1, (1, 1)),
        (512, 1024, 4, (1, 2)),  # four envs collect 4 steps per train_freq step
        (1536, 1024, 1, (2, 3)),
        (100, 1024, 1, (10, 1)),  # 1/10.24 per step: one update every 10 steps
        (1, 1024, 1, (1024, 1)),
    ],
)
def test_train_ratio_maps_onto_train_freq_and_gradient_steps(ratio, replayed, n_envs, expected):
    (freq, unit), steps = train_schedule(ratio, replayed, n_envs)
    assert (freq, steps) == expected and unit == "step"


def test_configuration():
    env = SpaceEnv(spaces.Box(-1, 1, (3,), np.float32), spaces.Discrete(2))
    model = DreamerV3(env, model_size="XS")
    assert model.replay_ratio == 64.0 and model.gradient_steps == 1 and model.train_freq.frequency == 16
    rssm = model.policy.world_model.rssm
    assert (rssm.deter_size, rssm.stoch_size, rssm.classes) == (SIZES["XS"]["deter_size"], 32, 32)
    assert any(isinstance(m, th.nn.LayerNorm) for m in model.policy.modules())
    assert any(isinstance(m, th.nn.SiLU) for m in model.policy.modules())
    assert model.policy.critic.bins == 255 and model.policy.world_model.reward_head.bins == 255
    assert model.policy.critic.predict(th.randn(4, rssm.feat_dim)).abs().max() < 1e-5
    assert model.policy.wm_optimizer.defaults["eps"] == 1e-8 and model.policy.actor_optimizer.defaults["eps"] == 1e-5
    overridden = DreamerV3(env, model_size="XS", policy_kwargs={"deter_size": 64})
    assert overridden.policy.world_model.rssm.deter_size == 64
    assert not any(isinstance(m, th.nn.SiLU) for m in DreamerV2(env, policy_kwargs=TINY).policy.modules())
    with pytest.raises(ValueError, match="model_size"):
        DreamerV3(env, model_size="XXL")
    with pytest.raises(ValueError, match="train_ratio=None"):
        DreamerV3(env, train_freq=4)
    direct = DreamerV3(env, policy_kwargs=TINY, train_ratio=None, train_freq=2, gradient_steps=3, batch_size=4)
    assert direct.train_freq.frequency == 2 and direct.gradient_steps == 3


def test_symlog_inputs_for_vectors_only():
    env = SpaceEnv(
        spaces.Dict({"image": spaces.Box(0, 255, (8, 8, 3), np.uint8), "state": spaces.Box(-9, 9, (2,), np.float32)}),
        spaces.Discrete(2),
    )
    obs = {"image": th.full((1, 8, 8, 3), 255, dtype=th.uint8), "state": th.tensor([[-3.0, 5.0]])}
    v3 = DreamerV3(env, policy_kwargs=TINY).policy.world_model.preprocess(obs, 1)
    v2 = DreamerV2(env, policy_kwargs=TINY).policy.world_model.preprocess(obs, 1)
    assert th.allclose(v3["state"], symlog(obs["state"])) and th.equal(v2["state"], obs["state"])
    assert th.equal(v3["image"], v2["image"]) and v3["image"].max() == 0.5


def test_target_critic_is_an_ema_of_the_critic():
    model = DreamerV3("MinAtar/Breakout-v1", policy_kwargs=TINY, **fast(DreamerV3))
    policy = model.policy
    old_target = [p.clone() for p in policy.target_critic.parameters()]
    with th.no_grad():
        for p in policy.critic.parameters():
            p.add_(1.0)
    policy.update_target_critic(model.tau)
    critic_params = list(policy.critic.parameters())
    for target, old, critic in zip(policy.target_critic.parameters(), old_target, critic_params, strict=True):
        assert th.allclose(target, 0.98 * old + 0.02 * critic)
    before = [p.clone() for p in policy.target_critic.parameters()]
    model.learn(100)  # training moves the target a little towards the critic every update, never onto it
    assert model._n_updates > 0
    for target, old, critic in zip(policy.target_critic.parameters(), before, policy.critic.parameters(), strict=True):
        assert not th.equal(target, old) and not th.equal(target, critic)
    frozen = DreamerV3("MinAtar/Breakout-v1", policy_kwargs=TINY, target_update_interval=10**9, **fast(DreamerV3))
    start = [p.clone() for p in frozen.policy.target_critic.parameters()]
    frozen.learn(100)  # the negative control: no target update, no change
    assert all(th.equal(a, b) for a, b in zip(start, frozen.policy.target_critic.parameters(), strict=True))


def test_learned_initial_state():
    env = SpaceEnv(spaces.Box(-1, 1, (3,), np.float32), spaces.Discrete(2))
    rssm = DreamerV3(env, policy_kwargs=TINY).policy.world_model.rssm
    with th.no_grad():
        rssm.initial_deter.copy_(th.linspace(-2, 2, rssm.deter_size))
    state = rssm.initial(2, th.device("cpu"))
    state = state._replace(deter=state.deter + 5.0)
    reset, action = rssm.reset(state, th.ones(2, 2), th.tensor([1.0, 0.0]))
    deter0 = th.tanh(rssm.initial_deter)
    assert th.allclose(reset.deter[0], deter0) and th.allclose(reset.deter[1], th.full((rssm.deter_size,), 5.0))
    stoch0 = reset.stoch[0].reshape(rssm.stoch_size, rssm.classes)
    # a valid one-hot per latent, the prior's mode (straight-through, so equal up to float rounding)
    assert th.allclose(stoch0, stoch0.round(), atol=1e-6) and th.allclose(stoch0.sum(-1), th.ones(rssm.stoch_size))
    assert th.equal(stoch0.argmax(-1), rssm.prior(deter0).argmax(-1))
    assert action.tolist() == [[0.0, 0.0], [1.0, 1.0]]
    v2 = DreamerV2(env, policy_kwargs=TINY).policy.world_model.rssm
    assert v2.initial_deter is None
    assert th.equal(v2.reset(state, th.ones(2, 2), th.tensor([1.0, 0.0]))[0].deter[0], th.zeros(rssm.deter_size))


@pytest.mark.parametrize("action_space", [spaces.Discrete(3), spaces.Box(-1, 1, (2,), np.float32)])
def test_behavior_losses_against_a_hand_written_reference(action_space):
    """DreamerV3's actor and critic losses, rebuilt from the paper's formulas (Eq. 7-11) with
    plain loops and the imagined trajectory of the same random draws."""
    from sb3_dreamer.common.behavior import behavior_losses, imagine
    from sb3_dreamer.common.rssm import RSSMState

    th.manual_seed(0)
    model = DreamerV3(
        SpaceEnv(spaces.Box(-1, 1, (3,), np.float32), action_space),
        policy_kwargs=TINY,
        batch_size=2,
        sequence_length=5,
        imagination_horizon=4,
    )
    policy, wm = model.policy, model.policy.world_model
    with th.no_grad():  # make every head non-trivial
        for module in (policy.critic, policy.target_critic, wm.reward_head, wm.continue_head):
            for p in module.parameters():
                p.add_(0.3 * th.randn_like(p))
        policy.return_normalizer.low.fill_(-3.0)
        policy.return_normalizer.high.fill_(40.0)
    first = th.zeros(2, 5)
    first[:, 0] = 1
    post, _ = wm.rssm.observe(wm.embed({"obs": th.randn(2, 5, 3)}, 2), th.zeros(2, 5, policy.action_dim), first)
    is_terminal = th.zeros(2, 5)
    is_terminal[0, 2] = 1
    th.manual_seed(1)
    actor_loss, critic_loss, metrics = behavior_losses(
        wm, policy.actor, policy.critic, policy.target_critic, post, is_terminal, 4, model.gamma, 0.95,
        float(model.actor_grad_mix), model.entropy_coef, **model._behavior_options(),
    )  # fmt: skip
    th.manual_seed(1)
    start = RSSMState(*(x.detach().flatten(0, 1) for x in post))
    with th.no_grad():
        feats, raws, _ = imagine(wm.rssm, policy.actor, start, 4)
    gamma, lam, H = model.gamma, 0.95, 4
    reward = [wm.reward(feats[t + 1]) for t in range(H)]  # r_{t+1}
    cont = [(wm.continue_head(feats[t + 1]).squeeze(-1) > 0).float() for t in range(H)]  # mode of c_{t+1}
    value = [policy.critic.predict(feats[t]) for t in range(H + 1)]  # the online critic bootstraps
    ret = [None] * H
    nxt = value[H]
    for t in reversed(range(H)):
        nxt = reward[t] + gamma * cont[t] * ((1 - lam) * value[t + 1] + lam * nxt)
        ret[t] = nxt
    ret = th.stack(ret)
    weight, running = [], 1.0 - is_terminal.flatten()
    for t in range(H):
        weight.append(running.clone())
        running = running * gamma * cont[t]
    weight = th.stack(weight)
    q = th.quantile(ret.flatten(), th.tensor([0.05, 0.95]))
    scale = max(1.0, (0.99 * 40.0 + 0.01 * q[1].item()) - (0.99 * -3.0 + 0.01 * q[0].item()))
    assert metrics["return_scale"].item() == pytest.approx(scale, rel=1e-5)
    out = policy.critic(feats[:-1])
    log_p = out.log_softmax(-1)
    support = policy.critic.support
    critic_ref = -(two_hot(symlog(ret), support) * log_p).sum(-1)
    critic_ref -= (two_hot(symlog(policy.target_critic.predict(feats[:-1])), support) * log_p).sum(-1)
    assert critic_loss.item() == pytest.approx((weight * critic_ref).mean().item(), rel=1e-5)
    log_prob, entropy = policy.actor.log_prob_entropy(feats[:-1], raws)
    if model.actor_grad_mix == 1.0:  # REINFORCE with the normalised advantage only
        objective = log_prob * (ret - th.stack(value[:H])) / scale + 3e-4 * entropy
    else:  # dynamics backpropagation of the normalised return (its value here; the gradient path differs)
        objective = ret / scale + 3e-4 * entropy
    assert actor_loss.item() == pytest.approx(-(weight * objective).mean().item(), rel=1e-5)
