"""The contracts of common/ that new algorithms build on: the policy's optimizer mapping, the
world-model loss as named terms weighted by ``loss_scales``, and the latent as a part."""

import math
import zipfile

import numpy as np
import pytest
import torch as th
from conftest import TINY, fast
from envs import SpaceEnv
from gymnasium import spaces
from stable_baselines3.common.logger import configure
from torch import nn

from sb3_dreamer import DreamerPolicy, DreamerV2
from sb3_dreamer.common.algorithm import WorldModelAlgorithm
from sb3_dreamer.common.behavior import Actor, imagine
from sb3_dreamer.common.distributions import batch_free_nats_kl
from sb3_dreamer.common.latents import GaussianLatent
from sb3_dreamer.common.observations import OBS_KEY, observation_parts
from sb3_dreamer.common.rssm import RSSMState
from sb3_dreamer.common.world_model import SequenceBatch, WorldModel


class DualPolicy(DreamerPolicy):
    """DreamerPolicy with a fourth optimizer, for a dual variable (as a constrained method has)."""

    optimizer_learning_rates = {**DreamerPolicy.optimizer_learning_rates, "dual_optimizer": "dual_learning_rate"}

    def _build(self, lr_schedule):
        super()._build(lr_schedule)
        self.log_dual = nn.Parameter(th.zeros(()))
        self.dual_optimizer = th.optim.Adam([self.log_dual], lr=1.0)


class DualDreamer(DreamerV2):
    policy_aliases = {**DreamerV2.policy_aliases, "DreamerPolicy": DualPolicy}

    def __init__(self, *args, dual_learning_rate=0.05, **kwargs):
        self.dual_learning_rate = dual_learning_rate
        super().__init__(*args, **kwargs)

    def train_step(self, batch):
        metrics = super().train_step(batch)
        optimizer = self.policy.dual_optimizer
        optimizer.zero_grad()
        ((self.policy.log_dual - 1.0) ** 2).backward()
        optimizer.step()
        return metrics


def _env():
    return SpaceEnv(spaces.Box(-1.0, 1.0, (5,), np.float32), spaces.Discrete(3))


def test_a_policy_with_an_extra_optimizer_schedules_saves_and_loads_it(tmp_path):
    schedule = lambda progress: 0.05 + 0.05 * progress  # noqa: E731
    model = DualDreamer(_env(), policy_kwargs=TINY, seed=0, dual_learning_rate=schedule, **fast(DreamerV2))
    model.learn(60)
    model.set_logger(configure(None, []))
    recorded, original = {}, model.logger.record
    model.logger.record = lambda key, value, exclude=None: (recorded.__setitem__(key, value), original(key, value))
    model.learn(60, reset_num_timesteps=False)
    policy = model.policy
    assert policy.log_dual.item() != 0.0  # the dual variable was trained
    rate = policy.dual_optimizer.param_groups[0]["lr"]
    assert rate < 0.1 and rate == pytest.approx(schedule(model._current_progress_remaining))
    assert recorded["train/dual_learning_rate"] == rate
    path = tmp_path / "dual.zip"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        assert "policy.dual_optimizer.pth" in archive.namelist()
    loaded = DualDreamer.load(path, env=_env(), device="cpu")
    assert th.equal(loaded.policy.log_dual, policy.log_dual)
    saved, restored = policy.dual_optimizer.state_dict(), loaded.policy.dual_optimizer.state_dict()
    assert th.equal(saved["state"][0]["exp_avg"], restored["state"][0]["exp_avg"])
    loaded.learn(20, reset_num_timesteps=False)  # resumes with the same schedule

    # a zip without the extra optimizer is refused, naming it
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(broken, "w") as target:
        for item in source.infolist():
            if item.filename != "policy.dual_optimizer.pth":
                target.writestr(item, source.read(item.filename))
    with pytest.raises(ValueError, match=r"lacks policy\.dual_optimizer\.pth"):
        DualDreamer.load(broken, env=_env(), device="cpu")


def _loss_and_batch(**scales):
    th.manual_seed(0)
    model = DreamerV2(_env(), policy_kwargs=TINY, seed=0, **fast(DreamerV2))
    model.learn(60)
    batch = model.replay_buffer.sample_sequences(4, 8)
    return model, batch, {**model.loss_scales, **scales}


def test_world_model_loss_is_the_scaled_sum_of_its_named_terms():
    model, batch, scales = _loss_and_batch()
    wm = model.policy.world_model
    assert set(scales) == {"reconstruction", "reward", "continue", "dyn", "rep"}
    th.manual_seed(1)
    loss, _, metrics = wm.loss(batch, model._kl_terms, scales)
    total = sum(scales[name] * metrics[f"{name}_loss"] for name in scales)
    assert loss.item() == pytest.approx(total.item(), rel=1e-6)
    doubled = {**scales, "reward": 2.0 * scales["reward"]}
    th.manual_seed(1)
    loss2, _, _ = wm.loss(batch, model._kl_terms, doubled)
    assert loss2.item() == pytest.approx(loss.item() + scales["reward"] * metrics["reward_loss"].item(), rel=1e-6)
    # DreamerV2's scales are the paper's: beta alpha and beta (1 - alpha) on the two KL terms
    assert scales["dyn"] == pytest.approx(0.1 * 0.8) and scales["rep"] == pytest.approx(0.1 * 0.2)
    with pytest.raises(ValueError, match="loss_scales lacks"):
        wm.loss(batch, model._kl_terms, {k: v for k, v in scales.items() if k != "continue"})


def test_the_decoder_can_be_switched_off_or_detached():
    model, batch, scales = _loss_and_batch()
    wm = model.policy.world_model

    def gradients(scales, detach):
        wm.zero_grad(set_to_none=True)
        loss, _, metrics = wm.loss(batch, model._kl_terms, scales, detach_decoder=detach)
        loss.backward()
        return metrics, {name: p.grad for name, p in wm.named_parameters()}

    no_decoder, grads = gradients({**scales, "reconstruction": 0.0}, False)
    assert "reconstruction_loss" not in no_decoder
    assert all(g is None for name, g in grads.items() if name.startswith("decoder."))
    # detached: the decoder learns, and its loss sends nothing into the representation
    only_decoder = {name: 0.0 for name in scales} | {"reconstruction": 1.0}
    _, grads = gradients(only_decoder, True)
    assert any(g is not None and g.abs().sum() > 0 for name, g in grads.items() if name.startswith("decoder."))
    assert all(g is None or g.abs().sum() == 0 for name, g in grads.items() if name.startswith("encoder."))
    _, grads = gradients(only_decoder, False)  # not detached: it does shape the encoder
    assert any(g is not None and g.abs().sum() > 0 for name, g in grads.items() if name.startswith("encoder."))


def test_gaussian_latent_against_hand_computed_values():
    latent = GaussianLatent(1)
    p, q = th.tensor([0.0, 1.0]), th.tensor([1.0, 2.0])  # [mean, std]: N(0, 1) and N(1, 2^2)
    # KL[N(0,1) || N(1,4)] = ln(2 / 1) + (1 + 1) / (2 * 4) - 1/2
    assert latent.kl(p, q).item() == pytest.approx(math.log(2.0) + 0.25 - 0.5)
    assert latent.kl(q, q).item() == pytest.approx(0.0, abs=1e-7)
    assert latent.entropy(q).item() == pytest.approx(0.5 * math.log(2 * math.pi * math.e) + math.log(2.0))
    # std = softplus(raw) + 0.1: raw 0 gives ln 2 + 0.1
    assert latent.stats(th.tensor([3.0, 0.0])).tolist() == pytest.approx([3.0, math.log(2.0) + 0.1])
    assert latent.mode(q).tolist() == [1.0]
    th.manual_seed(0)
    stats = th.tensor([[2.0, 0.5]], requires_grad=True)
    z = latent.sample(stats.expand(20000, 2))
    assert z.mean().item() == pytest.approx(2.0, abs=0.02) and z.std().item() == pytest.approx(0.5, abs=0.02)
    z.sum().backward()  # reparameterised: the gradient reaches the mean and the std
    assert stats.grad[0, 0].item() == pytest.approx(20000.0) and stats.grad[0, 1].abs().item() > 0


def test_the_rssm_and_world_model_take_a_gaussian_latent():
    """DreamerV1 / PlaNet: the same RSSM, world model loss and imagination with a Gaussian z."""
    th.manual_seed(0)
    parts = observation_parts(spaces.Box(-1.0, 1.0, (5,), np.float32))
    wm = WorldModel(parts, 3, 16, 16, 0, 0, 1, 16, 4, latent=GaussianLatent(6))
    rssm = wm.rssm
    assert rssm.stoch_dim == 6 and rssm.feat_dim == 22 and rssm.prior_net[-1].out_features == 12
    batch_size, length = 3, 7
    is_first = th.zeros(batch_size, length)
    is_first[:, 0] = is_first[1, 4] = 1.0
    batch = SequenceBatch(
        {OBS_KEY: th.randn(batch_size, length, 5)},
        th.eye(3)[th.randint(0, 3, (batch_size, length))],
        th.randn(batch_size, length),
        is_first,
        th.zeros(batch_size, length),
        th.zeros(batch_size, length),
    )
    scales = {"reconstruction": 1.0, "reward": 1.0, "continue": 1.0, "dyn": 0.8, "rep": 0.2}
    latent = rssm.latent
    _, _, clipped = wm.loss(batch, lambda q, p: batch_free_nats_kl(q, p, 1e3, latent.kl), scales)
    assert clipped["dyn_loss"].item() == clipped["rep_loss"].item() == 1e3  # free nats
    loss, post, metrics = wm.loss(batch, lambda q, p: batch_free_nats_kl(q, p, 0.0, latent.kl), scales)
    assert post.stoch.shape == (batch_size, length, 6) and post.stats.shape == (batch_size, length, 12)
    assert th.isfinite(loss) and metrics["dyn_loss"].item() == pytest.approx(metrics["kl"].item(), rel=1e-5)
    assert th.isfinite(metrics["prior_entropy"]) and metrics["kl"].item() > 0.0
    loss.backward()
    assert rssm.prior_net[-1].weight.grad.abs().sum() > 0 and rssm.post_net[-1].weight.grad.abs().sum() > 0
    # an episode start inside the sequence resets z and its stats to zeros before the step
    reset, _ = rssm.reset(RSSMState(*(x[:, 3] for x in post)), th.ones(3, 3), is_first[:, 4])
    assert reset.stoch[1].abs().sum() == 0 and reset.stats[1].abs().sum() == 0 and reset.stoch[0].abs().sum() > 0
    # imagination without autograd takes the generic path (no one-hot block to gather)
    actor = Actor(rssm.feat_dim, 3, True, 1, 16)
    with th.no_grad():
        start = RSSMState(*(x.flatten(0, 1) for x in post))
        feats, actions, _ = imagine(rssm, actor, start, 4)
    assert isinstance(feats, th.Tensor) and feats.shape == (5, batch_size * length, 22) and actions.shape[0] == 4
    state = rssm.img_step(start, actions[0], sample=False)
    assert th.equal(state.stoch, state.stats[..., :6])  # the mode is the mean


@pytest.mark.parametrize("algo_name", ["DreamerV2", "DreamerV3"])
def test_an_algorithm_trains_saves_and_loads_with_a_gaussian_latent(algo_name, tmp_path):
    import sb3_dreamer

    cls = getattr(sb3_dreamer, algo_name)
    model = cls(_env(), policy_kwargs={**TINY, "latent": "gaussian"}, seed=0, **fast(cls))
    model.learn(100)
    assert isinstance(model.policy.world_model.rssm.latent, GaussianLatent)
    assert model._n_updates > 0 and model._skipped_updates == 0
    model.save(tmp_path / "gaussian.zip")
    loaded = cls.load(tmp_path / "gaussian.zip", env=_env(), device="cpu")
    assert loaded.policy.latent == "gaussian"
    obs = np.random.default_rng(0).uniform(-1, 1, (4, 5)).astype(np.float32)
    state, starts = None, np.ones(4, bool)
    for _ in range(3):
        a, state_a = model.predict(obs, state, starts, deterministic=True)
        b, state_b = loaded.predict(obs, state, starts, deterministic=True)
        assert np.array_equal(a, b) and all(np.array_equal(x, y) for x, y in zip(state_a, state_b, strict=True))
        state, starts = state_a, np.zeros(4, bool)
    with pytest.raises(ValueError, match="latent must be one of"):
        cls(_env(), policy_kwargs={**TINY, "latent": "beta"}, **fast(cls))


class LookaheadPolicy(DreamerPolicy):
    """No actor, no critic, one optimizer: acts by a one-step lookahead on the predicted reward
    (a stand-in for PlaNet's planner, built from the world-model half of :class:`DreamerPolicy`)."""

    optimizer_learning_rates = {"wm_optimizer": "learning_rate"}

    @classmethod
    def initial_learning_rates(cls, rates):
        return {}

    def _build(self, lr_schedule):
        self._build_world_model()
        self._init_weights()
        self.wm_optimizer = self._optimizer(self.world_model, lr_schedule(1), self.world_model_optimizer_kwargs)

    def act(self, state, deterministic=False):
        rssm, n = self.world_model.rssm, len(state.deter)
        rewards = [
            self.world_model.reward(rssm.img_step(state, action.expand(n, -1), sample=False).feat)
            for action in th.eye(self.action_dim, device=self.device)
        ]
        return th.nn.functional.one_hot(th.stack(rewards, -1).argmax(-1), self.action_dim).float()


class Lookahead(WorldModelAlgorithm):
    """A sibling written on the base class alone: none of the actor-critic arguments."""

    policy_aliases = {"DreamerPolicy": LookaheadPolicy, "MlpPolicy": LookaheadPolicy}

    def __init__(self, env, policy="MlpPolicy", learning_rate=1e-3, **kwargs):
        super().__init__(
            env,
            policy,
            learning_rate=learning_rate,
            buffer_size=10_000,
            learning_starts=40,
            batch_size=4,
            sequence_length=8,
            gamma=0.99,
            train_freq=4,
            gradient_steps=1,
            train_ratio=None,
            max_grad_norm=100.0,
            world_model_max_grad_norm=None,
            **kwargs,
        )

    @property
    def loss_scales(self):
        return {"reconstruction": 1.0, "reward": 1.0, "continue": 1.0, "dyn": 0.8, "rep": 0.2}

    def _kl_terms(self, post, prior):
        return batch_free_nats_kl(post, prior, 1.0, self.policy.world_model.rssm.latent.kl)

    def _train_behavior(self, posterior, batch):
        return {}

    def _after_update(self):
        pass


def test_a_policy_without_an_actor_and_one_optimizer_trains_saves_loads_and_resumes(tmp_path):
    schedule = lambda progress: 1e-3 * progress  # noqa: E731
    model = Lookahead(_env(), learning_rate=schedule, policy_kwargs={**TINY, "latent": "gaussian"}, seed=0)
    policy = model.policy
    assert not hasattr(policy, "actor") and not hasattr(policy, "critic_optimizer")
    before = [p.detach().clone() for p in policy.world_model.parameters()]
    model.learn(120)
    assert model._n_updates > 0
    assert any(not th.equal(a, b) for a, b in zip(before, policy.world_model.parameters(), strict=True))
    rate = policy.wm_optimizer.param_groups[0]["lr"]
    assert rate == pytest.approx(schedule(model._current_progress_remaining)) and rate < 1e-3
    path = tmp_path / "lookahead.zip"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        assert sorted(n for n in archive.namelist() if n.endswith("optimizer.pth")) == ["policy.wm_optimizer.pth"]
    loaded = Lookahead.load(path, env=_env(), device="cpu")
    obs = np.random.default_rng(0).uniform(-1, 1, (6, 5)).astype(np.float32)
    expected, _ = model.predict(obs, deterministic=True)
    actions, _ = loaded.predict(obs, deterministic=True)
    assert np.array_equal(actions, expected)
    loaded.learn(40, reset_num_timesteps=False)  # resumes: the schedule and the optimizer state carry on
    assert loaded.num_timesteps == 160 and loaded._n_updates > model._n_updates
