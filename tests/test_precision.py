"""``precision="bf16-mixed"``: bfloat16 autocast of the training forward passes, with float32
weights, gradients, optimizer state and distributions."""

import copy

import numpy as np
import pytest
import torch as th
from conftest import TINY, fast
from envs import SpaceEnv
from gymnasium import spaces

from sb3_dreamer import DreamerV3
from sb3_dreamer.common.behavior import imagine
from sb3_dreamer.common.kernels import InputLinear, OneHotInput
from sb3_dreamer.common.networks import ScalarHead
from sb3_dreamer.common.rssm import RSSMState

BF16 = th.autocast("cpu", dtype=th.bfloat16)


def test_input_linear_under_autocast_matches_the_dense_layer():
    """The gather reads the weights in bfloat16 like autocast's matmul does: the same outputs (to
    bfloat16 rounding) and float32 weight gradients close to the dense layer's."""
    th.manual_seed(0)
    variables, classes, other = 3, 5, 4
    layer = InputLinear(other + variables * classes, 7)
    index = th.randint(0, classes, (2, 6, variables)) + th.arange(variables) * classes
    z = th.zeros(2, 6, variables * classes).scatter_(-1, index, 1.0)
    rest = th.randn(2, 6, other)
    x = th.cat([rest, z], -1)
    grad_out = th.randn(2, 6, 7)
    outputs, grads = [], []
    for inputs in (OneHotInput(x.bfloat16(), rest.bfloat16(), index, other, variables * classes), x):
        layer.zero_grad()
        with BF16:
            out = layer(inputs)
        (out.float() * grad_out).sum().backward()
        outputs.append(out)
        grads.append([p.grad for p in layer.parameters()])
    assert outputs[0].dtype == outputs[1].dtype == th.bfloat16
    assert th.allclose(outputs[0].float(), outputs[1].float(), rtol=2e-2, atol=2e-2)
    for gathered_grad, dense_grad in zip(*grads, strict=True):
        assert gathered_grad.dtype == th.float32
        assert th.allclose(gathered_grad, dense_grad, rtol=2e-2, atol=5e-2)


def test_two_hot_mean_is_float32_under_autocast():
    """The expected value ``symexp(softmax(out) @ bins)`` is not rounded to bfloat16 by autocast."""
    th.manual_seed(0)
    head = ScalarHead(8, 1, 16, bins=255)
    out = 3.0 * th.randn(64, 255)
    with BF16:
        mean = head.mean(out)
    assert mean.dtype == th.float32
    assert th.allclose(mean, head.mean(out), rtol=1e-6, atol=1e-6)


def _model(precision: str, seed: int = 0) -> DreamerV3:
    env = SpaceEnv(spaces.Box(-1.0, 1.0, (5,), np.float32), spaces.Discrete(3))
    model = DreamerV3(env, policy_kwargs=TINY, seed=seed, precision=precision, **fast(DreamerV3))
    model.learn(60)  # fills the replay and trains a few updates
    return model


def test_bf16_mixed_losses_match_fp32_on_the_same_weights_and_batch():
    model = _model("fp32")
    wm = model.policy.world_model
    batch = model.replay_buffer.sample_sequences(model.batch_size, model.sequence_length)
    results = {}
    for precision in ("fp32", "bf16-mixed"):
        model.precision = precision
        th.manual_seed(3)
        with model.autocast():
            loss, post, metrics = wm.loss(batch, model._kl_terms, model.loss_scales)
            with th.no_grad():  # (REINFORCE's imagination: the states fill the RSSM's buffer)
                feats, _, _ = imagine(wm.rssm, model.policy.actor, RSSMState(*(x.flatten(0, 1) for x in post)), 3)
        results[precision] = (loss, post, feats, metrics)
    _, post32, feats32, metrics32 = results["fp32"]
    loss16, post16, feats16, metrics16 = results["bf16-mixed"]
    # distributions and losses are float32; the imagined states are stored in bfloat16
    assert loss16.dtype == post16.logits.dtype == post16.deter.dtype == th.float32
    assert feats16.dense.dtype == th.bfloat16 and feats32.dense.dtype == th.float32
    for key in ("reconstruction_loss", "reward_loss", "continue_loss", "kl"):
        assert metrics16[key].item() == pytest.approx(metrics32[key].item(), rel=0.05, abs=0.02), key
    assert th.allclose(post16.logits, post32.logits, atol=0.1)


def test_bf16_mixed_trains_float32_weights_and_is_saved(tmp_path):
    model = _model("bf16-mixed")
    before = copy.deepcopy(model.policy.state_dict())
    model.learn(40, reset_num_timesteps=False)
    after = model.policy.state_dict()
    assert all(value.dtype != th.bfloat16 for value in after.values())
    assert not th.equal(before["world_model.reward_head.net.0.weight"], after["world_model.reward_head.net.0.weight"])
    assert not th.equal(before["actor.net.0.weight"], after["actor.net.0.weight"])
    assert np.isfinite(model.logger.name_to_value["train/model_loss"])
    assert model._skipped_updates == 0
    model.save(tmp_path / "model")
    assert DreamerV3.load(tmp_path / "model").precision == "bf16-mixed"
    assert DreamerV3.load(tmp_path / "model", precision="fp32").precision == "fp32"


def test_unknown_precision_is_an_error():
    with pytest.raises(ValueError, match=r"precision.*'fp16'"):
        DreamerV3(SpaceEnv(spaces.Box(-1.0, 1.0, (5,), np.float32), spaces.Discrete(3)), precision="fp16")


def test_deferred_weight_grads_under_bf16_autocast(per_step_weight_grads):
    """The filtering loop's deferred weight gradients under bfloat16 autocast: float32 gradients for
    the float32 weights, equal to the per-step ones up to bfloat16 rounding."""
    from sb3_dreamer.common.networks import V3_STYLE
    from sb3_dreamer.common.rssm import RSSM

    th.manual_seed(0)
    rssm = RSSM(8, 3, 32, 24, 4, 4, style=V3_STYLE, unimix=0.01, learned_initial=True)
    embed, action = th.randn(4, 9, 8), th.eye(3)[th.randint(0, 3, (4, 9))]
    is_first = th.zeros(4, 9)
    is_first[:, 0] = 1.0

    def gradients():
        th.manual_seed(1)
        with th.autocast("cpu", dtype=th.bfloat16):
            post, prior_logits = rssm.observe(embed, action, is_first)
        loss = post.feat.float().square().sum() + prior_logits.square().sum()
        return th.autograd.grad(loss, [rssm.gru.linear.weight, rssm.post_net[-1].weight, rssm.post_net[-1].bias])

    deferred = gradients()

    per_step_weight_grads()
    for got, expected in zip(deferred, gradients(), strict=True):
        assert got.dtype == th.float32
        assert (got - expected).norm() <= 2e-2 * expected.norm()
