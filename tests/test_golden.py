"""Golden tests: hand-computed values for the maths and the time alignment."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from torch import nn

from sb3_dreamer.common.behavior import Actor, discount_weights, imagine, lambda_return
from sb3_dreamer.common.buffers import SequenceReplayBuffer
from sb3_dreamer.common.distributions import (
    balanced_kl,
    categorical_entropy,
    categorical_kl,
    categorical_log_prob,
    sample_one_hot,
    straight_through,
    unit_gaussian_nll_sum,
)
from sb3_dreamer.common.kernels import DeferredWeightGrads, InputLinear, OneHotInput, reused_gather_tables
from sb3_dreamer.common.networks import V2_STYLE, V3_STYLE, mlp
from sb3_dreamer.common.rssm import RSSM, RSSMState


def test_lambda_return_hand_computed():
    rewards = th.tensor([1.0, 2.0, 3.0])  # r_1, r_2, r_3
    values = th.tensor([10.0, 20.0, 30.0])  # v(s_1), v(s_2), v(s_3)
    discounts = th.tensor([0.5, 0.5, 0.5])  # gamma c_1, gamma c_2, gamma c_3
    # lambda = 0.5: R_2 = 3 + .5 * 30 = 18; R_1 = 2 + .5 (.5 * 20 + .5 * 18) = 11.5; R_0 = 1 + .5 (5 + 5.75) = 6.375
    assert lambda_return(rewards, values, discounts, 0.5).tolist() == pytest.approx([6.375, 11.5, 18.0])
    # lambda = 0: one-step TD targets r + d v
    assert lambda_return(rewards, values, discounts, 0.0).tolist() == pytest.approx([6.0, 12.0, 18.0])
    # lambda = 1: Monte-Carlo return bootstrapped at the horizon: 1 + .5 (2 + .5 (3 + .5 * 30)) = 6.5
    assert lambda_return(rewards, values, discounts, 1.0).tolist() == pytest.approx([6.5, 11.0, 18.0])


def test_lambda_return_stops_at_predicted_termination():
    rewards = th.tensor([[1.0], [5.0]])
    values = th.tensor([[100.0], [100.0]])
    discounts = th.tensor([[0.0], [0.9]])  # s_1 is terminal: nothing after r_1 counts
    assert lambda_return(rewards, values, discounts, 0.95)[0].item() == pytest.approx(1.0)


def test_discount_weights_hand_computed():
    first_continue = th.tensor([1.0, 0.0])  # the second start state is terminal in the data
    continues = th.tensor([[0.5, 1.0], [1.0, 1.0], [1.0, 1.0]])  # c_1, c_2, c_3
    weights = discount_weights(first_continue, continues, gamma=0.9)
    # weight_t = gamma^t prod_{k<=t} c_k: [1, .9 * .5, .81 * .5] and all zero after a terminal start
    assert weights[:, 0].tolist() == pytest.approx([1.0, 0.45, 0.405])
    assert weights[:, 1].tolist() == [0.0, 0.0, 0.0]


def test_categorical_kl_value():
    p = th.tensor([[[0.5, 0.5]]]).log()
    q = th.tensor([[[0.25, 0.75]]]).log()
    expected = 0.5 * np.log(0.5 / 0.25) + 0.5 * np.log(0.5 / 0.75)
    assert categorical_kl(p, q).item() == pytest.approx(expected, rel=1e-5)


def test_kl_balancing_sends_alpha_of_the_gradient_to_the_prior():
    post = th.tensor([[[0.3, -0.2, 0.5]]], requires_grad=True)
    prior = th.tensor([[[-0.1, 0.4, 0.0]]], requires_grad=True)
    loss, value = balanced_kl(post, prior, balance=0.8)
    loss.backward()
    ref_post, ref_prior = post.detach().clone().requires_grad_(), prior.detach().clone().requires_grad_()
    categorical_kl(ref_post, ref_prior).sum().backward()
    assert loss.item() == pytest.approx(value.item(), rel=1e-6)  # both sides have the same value
    assert th.allclose(prior.grad, 0.8 * ref_prior.grad, atol=1e-7)  # prior trained with alpha
    assert th.allclose(post.grad, 0.2 * ref_post.grad, atol=1e-7)  # posterior with 1 - alpha
    assert ref_prior.grad.abs().sum() > 0 and ref_post.grad.abs().sum() > 0


def test_free_nats_clip_the_mean_kl():
    post = th.zeros(2, 1, 3, requires_grad=True)
    prior = th.zeros(2, 1, 3, requires_grad=True)
    loss, _ = balanced_kl(post, prior, balance=0.8, free_nats=1.0)
    loss.backward()
    assert loss.item() == pytest.approx(1.0)
    assert post.grad.abs().sum() == 0 and prior.grad.abs().sum() == 0


def test_straight_through_forward_is_one_hot_backward_is_softmax():
    th.manual_seed(0)
    logits = th.randn(5, 4, requires_grad=True)
    sample = sample_one_hot(logits)
    out = straight_through(sample, logits)
    assert th.allclose(out.detach(), sample, atol=1e-6)  # forward: the one-hot sample (up to rounding)
    assert th.equal(sample.sum(-1), th.ones(5)) and set(sample.unique().tolist()) == {0.0, 1.0}
    weights = th.randn(5, 4)
    (out * weights).sum().backward()
    ref = logits.detach().clone().requires_grad_()
    (ref.softmax(-1) * weights).sum().backward()
    assert th.allclose(logits.grad, ref.grad, atol=1e-6)


def test_sample_one_hot_frequencies_match_the_probabilities():
    th.manual_seed(0)
    logits = th.tensor([[2.0, 0.0, -1.0, -30.0, 1.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    samples = sample_one_hot(logits.expand(100_000, 2, 5))
    assert th.equal(samples.sum(-1), th.ones(100_000, 2))
    freq = samples.mean(0)
    assert th.allclose(freq, logits.softmax(-1), atol=0.006)  # 3+ standard errors at n = 100k
    assert freq[0, 3] == 0.0  # a class of probability ~1e-14 is never drawn here


def test_straight_through_without_autograd_is_the_sample_itself():
    logits = th.randn(5, 4, requires_grad=True)
    sample = sample_one_hot(logits.detach())
    with th.no_grad():
        assert straight_through(sample, logits) is sample  # exact one-hot: imagination for REINFORCE
    assert straight_through(sample, logits).requires_grad


@pytest.mark.parametrize("offset, bias", [(4, True), (0, True), (4, False)])
def test_input_linear_reads_one_hot_inputs_like_the_dense_ones(offset, bias):
    """[h, z] (offset = len(h)) and [z, a] (offset 0): the gathered sum equals the dense product,
    with and without autograd, and so do the weight and bias gradients."""
    th.manual_seed(0)
    variables, classes, other = 3, 5, 4
    layer = InputLinear(other + variables * classes, 7, bias=bias)
    index = th.randint(0, classes, (2, 6, variables)) + th.arange(variables) * classes
    z = th.zeros(2, 6, variables * classes).scatter_(-1, index, 1.0)
    rest = th.randn(2, 6, other)
    x = th.cat([rest, z], -1) if offset else th.cat([z, rest], -1)
    inputs = OneHotInput(x, rest, index, offset, variables * classes)
    with th.no_grad():
        assert th.allclose(layer(inputs), layer(x), atol=1e-6)
        assert th.allclose(layer(inputs[1]), layer(x[1]), atol=1e-6)  # indexing along time
        assert th.allclose(layer(OneHotInput(None, rest, index, offset, variables * classes)), layer(x), atol=1e-6)
    grad_out = th.randn(2, 6, 7)
    assert th.allclose(layer(inputs), layer(x), atol=1e-6)
    (layer(inputs) * grad_out).sum().backward()
    grads = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    (layer(x) * grad_out).sum().backward()
    for grad, param in zip(grads, layer.parameters(), strict=True):
        assert th.allclose(grad, param.grad, atol=1e-5)


def _graph_nodes(tensor: th.Tensor) -> set[str]:
    seen, names, todo = set(), set(), [tensor.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        todo += [next_node for next_node, _ in node.next_functions]
    return names


def test_mlp_keeps_in_place_activations_off_views():
    """DreamerV2's in-place ELU after a linear layer of (T, B, F) inputs: ``MLP`` runs its layers
    on rows, so autograd records no CopySlices (which clones the whole gradient in the backward);
    outputs and gradients equal those of the same layers in an ``nn.Sequential``."""
    th.manual_seed(0)
    net = mlp(6, 3, 2, 8, V2_STYLE)
    plain = nn.Sequential(*net)
    x = th.randn(4, 5, 6)
    out, ref = net(x), plain(x)
    assert out.shape == (4, 5, 3) and th.allclose(out, ref, atol=1e-6)
    assert "CopySlices" in _graph_nodes(ref)  # what an in-place activation of a view costs
    assert "CopySlices" not in _graph_nodes(out)
    grad_out = th.randn(4, 5, 3)
    grads = th.autograd.grad(out, list(net.parameters()), grad_out)
    for grad, ref_grad in zip(grads, th.autograd.grad(ref, list(net.parameters()), grad_out), strict=True):
        assert th.allclose(grad, ref_grad, atol=1e-5)
    index = th.randint(0, 2, (4, 5, 2)) + th.arange(2) * 2  # [h, z] with z one-hot: the same through the gather
    x = th.cat([th.randn(4, 5, 2), th.zeros(4, 5, 4).scatter_(-1, index, 1.0)], -1)
    out = net(OneHotInput(x, x[..., :2], index, 2, 4))
    assert th.allclose(out, plain(x), atol=1e-6) and "CopySlices" not in _graph_nodes(out)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_image_gaussian_nll_is_half_the_squared_error_summed(layout):
    """-ln N(x; mu, 1) + const summed over (C, H, W): value and gradients of both arguments
    against the elementwise formula, in either memory layout of the images."""
    th.manual_seed(0)
    mean, target = th.randn(2, 3, 4, 5, 6, dtype=th.float64), th.randn(2, 3, 4, 5, 6, dtype=th.float64)
    if layout == "channels_last":  # (B, T, C, H, W) with C the fastest axis, as HWC images arrive
        mean, target = (x.movedim(2, -1).contiguous().movedim(-1, 2) for x in (mean, target))
    mean.requires_grad_(), target.requires_grad_()
    grad_out = th.randn(2, 3, dtype=th.float64)
    nll = unit_gaussian_nll_sum(mean, target, 3)
    reference = (0.5 * (mean - target) ** 2).sum((-3, -2, -1))
    assert nll.shape == (2, 3) and th.allclose(nll, reference)
    grads = th.autograd.grad(nll, (mean, target), grad_out)
    expected = th.autograd.grad(reference, (mean, target), grad_out)
    for grad, ref in zip(grads, expected, strict=True):
        assert th.allclose(grad, ref)
    assert th.allclose(grads[0], (mean - target).detach() * grad_out[..., None, None, None])


def test_in_place_elu_gives_the_gradients_of_the_plain_one():
    """V2's hidden layers apply ELU in place on the linear output; the parameter gradients equal
    those of the out-of-place activation."""
    th.manual_seed(0)
    net = mlp(6, 2, 3, 8, V2_STYLE)
    elus = [m for m in net if isinstance(m, th.nn.ELU)]
    assert len(elus) == 3 and all(m.inplace for m in elus)
    x = th.randn(5, 6)
    net(x).square().sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    for m in elus:
        m.inplace = False
    net.zero_grad()
    net(x).square().sum().backward()
    for grad, param in zip(grads, net.parameters(), strict=True):
        assert th.allclose(grad, param.grad)


@pytest.mark.parametrize("unimix", [0.0, 0.01])
def test_img_step_into_matches_img_step(unimix):
    """Imagination's buffered step draws the same state as img_step from the same random stream."""
    th.manual_seed(0)
    rssm = RSSM(embed_dim=3, action_dim=2, deter_size=6, hidden_size=5, stoch_size=4, classes=3, unimix=unimix)
    deter = th.randn(50, 6)
    stoch = th.zeros(50, 4, 3).scatter_(-1, th.randint(0, 3, (50, 4, 1)), 1.0).flatten(-2)
    action = th.eye(2)[th.randint(0, 2, (50,))]
    out = th.full((50, rssm.feat_dim), float("nan"))
    with th.no_grad():
        th.manual_seed(1)
        expected = rssm.img_step(RSSMState(deter, stoch, th.zeros(50, 4, 3)), action)
        th.manual_seed(1)
        new_deter, index = rssm.img_step_into(out, deter, rssm.one_hot_index(stoch), action)
    assert th.allclose(out, expected.feat, atol=1e-6)  # every entry written: no NaN left
    assert th.equal(new_deter, out[:, :6])
    assert th.equal(index, rssm.one_hot_index(expected.stoch))


@pytest.mark.parametrize("style, learned_initial", [(V2_STYLE, False), (V3_STYLE, True)])
def test_observe_weight_gradients_deferred_equal_per_step(per_step_weight_grads, style, learned_initial):
    """The filtering loop's weight gradients, summed after the loop as one product per layer,
    equal autograd's per-step ones; so do all other gradients (float64, episode starts mid-sequence)."""
    th.manual_seed(0)
    rssm = RSSM(3, 2, 6, 5, 4, 3, style=style, unimix=0.01, learned_initial=learned_initial).double()
    embed = th.randn(2, 7, 3, dtype=th.float64, requires_grad=True)
    action = th.eye(2, dtype=th.float64)[th.randint(0, 2, (2, 7))]
    is_first = th.zeros(2, 7)
    is_first[:, 0], is_first[0, 4] = 1.0, 1.0
    weights = th.randn(2, 7, 6 + 12, dtype=th.float64)

    def gradients(partial_first: bool = False):
        th.manual_seed(1)
        post, prior_logits = rssm.observe(embed, action, is_first)
        loss = (post.feat * weights).sum() + prior_logits.square().sum() + post.logits.square().sum()
        if partial_first:  # a pass that never reaches the collection must leave nothing for the next
            th.autograd.grad(loss, [rssm.gru.norm.weight], retain_graph=True)
        return th.autograd.grad(loss, [embed, *rssm.parameters()]), _graph_nodes(loss)

    deferred, nodes = gradients()
    assert {"_StashedLinearBackward", "_CollectWeightGradsBackward"} <= nodes  # the deferral is on
    partial_first, _ = gradients(partial_first=True)
    layers = (rssm.img_in[0], rssm.gru.linear, rssm.post_net[0], rssm.post_net[-1])
    assert all(layer._deferred is None for layer in layers)  # restored after the loop

    per_step_weight_grads()
    per_step, nodes = gradients()
    assert "_StashedLinearBackward" not in nodes
    for got, again, expected in zip(deferred, partial_first, per_step, strict=True):
        assert th.allclose(got, expected, rtol=1e-10, atol=1e-12)
        assert th.allclose(again, expected, rtol=1e-10, atol=1e-12)


def test_deferred_weight_grads_only_with_autograd_on_trainable_weights():
    layer = InputLinear(3, 2)
    with th.no_grad():
        assert not DeferredWeightGrads([layer]).active
    layer.requires_grad_(False)
    assert not DeferredWeightGrads([layer]).active
    x = th.randn(4, 3, requires_grad=True)
    deferred = DeferredWeightGrads([layer])
    (x,) = deferred.inputs(x)
    with deferred:
        out = layer(x)
    assert layer._deferred is None
    out.sum().backward()  # the layer's weights are frozen: the input's gradient only
    assert layer.weight.grad is None and th.allclose(x.grad, layer.weight.sum(0).expand(4, 3))


def _imagination_parts(seed: int = 0):
    th.manual_seed(seed)
    rssm = RSSM(embed_dim=3, action_dim=3, deter_size=6, hidden_size=5, stoch_size=4, classes=3)
    actor = Actor(rssm.feat_dim, 3, discrete=True, layers=2, units=8, unimix=0.01)
    index = th.randint(0, 3, (20, 4, 1))
    start = RSSMState(th.randn(20, 6), th.zeros(20, 4, 3).scatter_(-1, index, 1.0).flatten(-2), th.zeros(20, 4, 3))
    return rssm, actor, start


def test_logits_kept_by_imagination_equal_a_second_pass_over_its_states():
    """The actor's logits computed with autograd while imagining (the REINFORCE path) have the same
    values and give the same actor gradients as a second pass over the finished states, although
    the feature buffer is written row by row after each row's logits are taken."""
    rssm, actor, start = _imagination_parts()
    with th.no_grad():
        th.manual_seed(1)
        feats, raws, logits = imagine(rssm, actor, start, 5, keep_logits=True)
    grad_out = th.randn(5, 20)
    log_prob, entropy = categorical_log_prob(logits, raws), categorical_entropy(logits)
    ((log_prob + 0.1 * entropy) * grad_out).sum().backward()
    kept = [p.grad.clone() for p in actor.parameters()]
    dense = feats.dense.clone()
    actor.zero_grad()
    with th.no_grad():
        th.manual_seed(1)
        feats2, raws2, none = imagine(rssm, actor, start, 5)
    assert none is None and th.equal(raws2, raws) and th.equal(feats2.dense, dense)  # same random stream
    assert th.allclose(actor.logits(dense[:-1]), logits, atol=1e-6)
    log_prob, entropy = actor.log_prob_entropy(dense[:-1], raws)
    ((log_prob + 0.1 * entropy) * grad_out).sum().backward()
    for grad, param in zip(kept, actor.parameters(), strict=True):
        assert th.allclose(grad, param.grad, atol=1e-5)
    assert all(p.grad is None for p in rssm.parameters())  # imagination itself stays without autograd


def test_kept_logits_fail_loudly_once_the_buffer_is_reused():
    """The next imagination overwrites the reused feature buffer: the older logits' backward raises
    instead of using the new rows for the old weight gradient."""
    rssm, actor, start = _imagination_parts()
    with th.no_grad():
        _, _, old_logits = imagine(rssm, actor, start, 3, keep_logits=True)
        imagine(rssm, actor, start, 3, keep_logits=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        old_logits.sum().backward()


def test_reused_gather_tables_split_each_weight_once_within_the_block():
    th.manual_seed(0)
    layer = InputLinear(4 + 6, 5)
    index = th.randint(0, 3, (7, 2)) + th.tensor([0, 3])
    x = OneHotInput(None, th.randn(7, 4), index, 4, 6)
    with th.no_grad():
        plain = layer(x)
        with reused_gather_tables(layer):
            assert th.equal(layer(x), plain) and len(layer._tables) == 1
            first = next(iter(layer._tables.values()))
            layer(x)
            assert next(iter(layer._tables.values())) is first  # split once
        assert layer._tables is None  # no split outlives the block: later weight updates are seen
        layer.weight.add_(1.0)
        assert not th.allclose(layer(x), plain)


def test_rssm_resets_state_and_previous_action_at_is_first():
    th.manual_seed(0)
    rssm = RSSM(embed_dim=3, action_dim=2, deter_size=6, hidden_size=5, stoch_size=2, classes=3)
    embed = th.randn(1, 4, 3)
    actions = th.randn(1, 4, 2)  # non-zero everywhere, also on the reset row
    is_first = th.tensor([[1.0, 0.0, 1.0, 0.0]])
    post, prior = rssm.observe(embed, actions, is_first)
    fresh, fresh_prior = rssm.observe(embed[:, 2:], th.zeros(1, 2, 2), th.tensor([[1.0, 0.0]]))
    # at the reset step, h_2 = f(0, 0, 0) whatever came before, so h, q and p all match a fresh start
    assert th.allclose(post.deter[:, 2], fresh.deter[:, 0], atol=1e-6)
    assert th.allclose(post.logits[:, 2], fresh.logits[:, 0], atol=1e-6)
    assert th.allclose(prior[:, 2], fresh_prior[:, 0], atol=1e-6)
    assert not th.allclose(post.deter[:, 1], post.deter[:, 2])


def _buffer(capacity=32, n_envs=1):
    return SequenceReplayBuffer(capacity, spaces.Box(-100, 100, (1,), np.float32), spaces.Discrete(3), "cpu", n_envs)


def _step(buffer, obs, next_obs, action, reward, terminated=False, truncated=False, start=None):
    done = terminated or truncated
    infos = [{"TimeLimit.truncated": True} if truncated else {}]
    buffer.add(
        np.array([[obs]], np.float32),
        np.array([[next_obs]], np.float32),
        np.array([[action]]),
        np.array([reward], np.float32),
        np.array([done]),
        infos,
        episode_start=None if start is None else np.array([start]),
    )


def test_sampled_sequence_time_alignment():
    buffer = _buffer()
    # episode 1: x0 --a=2--> x1 (r=.5) --a=1--> x2 (r=1, terminated)
    _step(buffer, 0.0, 1.0, 2, 0.5)
    _step(buffer, 1.0, 2.0, 1, 1.0, terminated=True)
    # episode 2: x10 --a=0--> x11 (r=2, truncated: the real final observation is stored)
    _step(buffer, 10.0, 11.0, 0, 2.0, truncated=True)
    # episode 3 begins
    _step(buffer, 20.0, 21.0, 1, 3.0)
    batch = buffer.get_sequences(np.array([0]), np.array([0]), 7)
    assert batch.observations["obs"][0, :, 0].tolist() == [0.0, 1.0, 2.0, 10.0, 11.0, 20.0, 21.0]
    # row t holds a_{t-1}: zero at every is_first row
    assert batch.prev_actions[0].argmax(-1).tolist() == [0, 2, 1, 0, 0, 0, 1]
    assert batch.prev_actions[0].sum(-1).tolist() == [0, 1, 1, 0, 1, 0, 1]
    assert batch.rewards[0].tolist() == [0.0, 0.5, 1.0, 0.0, 2.0, 0.0, 3.0]  # r_t received on arriving at x_t
    assert batch.is_first[0].tolist() == [1, 0, 0, 1, 0, 1, 0]
    assert batch.is_terminal[0].tolist() == [0, 0, 1, 0, 0, 0, 0]  # truncation is not termination
    assert batch.is_last[0].tolist() == [0, 0, 1, 0, 1, 0, 0]
    # a window starting mid-episode is marked is_first at its first row (no state is carried)
    mid = buffer.get_sequences(np.array([0]), np.array([1]), 3)
    assert mid.is_first[0].tolist() == [1, 0, 1]
    assert mid.prev_actions[0].sum().item() == 1.0  # the a_0 of row 1 is dropped with the reset


def test_continue_target_bootstraps_truncation_not_termination():
    from sb3_dreamer.common.world_model import SequenceBatch

    buffer = _buffer()
    _step(buffer, 0.0, 1.0, 0, 0.0, truncated=True)
    _step(buffer, 5.0, 6.0, 0, 0.0, terminated=True)
    batch: SequenceBatch = buffer.get_sequences(np.array([0]), np.array([0]), 4)
    continue_target = 1.0 - batch.is_terminal  # what WorldModel.loss trains the discount head on
    assert continue_target[0].tolist() == [1.0, 1.0, 1.0, 0.0]


def test_sampled_windows_never_cross_the_write_position():
    np.random.seed(0)
    buffer = _buffer(capacity=10)
    _step(buffer, 0.0, 1.0, 0, 0.0)
    for i in range(1, 24):
        _step(buffer, float(i), float(i + 1), 0, 0.0)
    assert buffer.full and buffer.size() == 10
    batch = buffer.sample_sequences(200, 4)
    obs = batch.observations["obs"][..., 0]
    assert th.all(obs[:, 1:] - obs[:, :-1] == 1)  # consecutive rows only
    assert obs.min() >= 15 and obs.max() <= 24  # only the 10 newest rows


def test_sequence_sampling_needs_enough_rows():
    buffer = _buffer()
    _step(buffer, 0.0, 1.0, 0, 0.0)
    assert not buffer.can_sample(8)
    with pytest.raises(ValueError, match="no sequence of 8 steps"):
        buffer.sample_sequences(2, 8)


def test_per_env_streams_are_contiguous():
    buffer = SequenceReplayBuffer(20, spaces.Box(-100, 100, (1,), np.float32), spaces.Discrete(2), "cpu", n_envs=2)
    for t in range(4):
        obs = np.array([[t], [100 + t]], np.float32)
        nxt = obs + 1
        done = np.array([False, t == 1])  # env 1 ends an episode at t = 1
        buffer.add(obs, nxt, np.array([[0], [1]]), np.zeros(2, np.float32), done, [{}, {}])
    assert buffer.stored().tolist() == [5, 6]  # env 1 wrote two reset rows
    stream0 = buffer.observations["obs"][:5, 0, 0].tolist()
    stream1 = buffer.observations["obs"][:6, 1, 0].tolist()
    assert stream0 == [0, 1, 2, 3, 4]
    assert stream1 == [100, 101, 102, 102, 103, 104]
    assert buffer.is_first[:6, 1].tolist() == [True, False, False, True, False, False]


def test_box_entropy_estimate_is_reparameterised():
    from sb3_dreamer.common.distributions import TanhGaussian

    th.manual_seed(0)
    std = th.full((20000, 1), 0.1, requires_grad=True)
    dist = TanhGaussian(th.zeros(20000, 1), std)
    _, x = dist.rsample()
    (-dist.log_prob_pre_tanh(x)).mean().backward()  # entropy estimate with the sample's gradient path
    assert std.grad.sum() > 0.5  # d H / d sigma = 1 / sigma for a narrow Gaussian: widening raises entropy
    std.grad = None
    (-dist.log_prob_pre_tanh(x.detach())).mean().backward()  # score function only: zero in expectation
    assert abs(std.grad.sum()) < 0.5


def test_tanh_gaussian_log_prob_is_exact_when_saturated():
    from sb3_dreamer.common.distributions import TanhGaussian

    x = th.linspace(-12.0, 12.0, 49, dtype=th.float64)  # tanh(x) rounds to +-1 in float32 beyond ~9
    mean, std = 0.5, 5.0
    # reference: log N(x; mean, std) + 2 log cosh(x), with log cosh(x) = |x| + log1p(exp(-2|x|)) - log 2
    normal = -0.5 * ((x - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)
    reference = normal + 2 * (x.abs() + th.log1p(th.exp(-2 * x.abs())) - np.log(2))
    dist = TanhGaussian(th.full((49, 1), mean), th.full((49, 1), std))
    got = dist.log_prob_pre_tanh(x.float().unsqueeze(-1))
    assert th.allclose(got.double(), reference, atol=1e-4)
    # replayed actions go through atanh: exact away from saturation
    inner = x.abs() < 3
    via_action = dist.log_prob(th.tanh(x.float()).unsqueeze(-1))
    assert th.allclose(via_action.double()[inner], reference[inner], atol=1e-3)


def _counter_model(env):
    from conftest import TINY

    from sb3_dreamer import DreamerV2

    model = DreamerV2(env, policy_kwargs=TINY, learning_starts=10_000, buffer_size=100, train_freq=1)
    model.learn(8)
    buffer = model.replay_buffer
    rows = buffer.stored()[0]
    return buffer, rows


def test_termination_through_learn_stores_the_final_observation():
    from envs import CounterEnv

    buffer, rows = _counter_model(CounterEnv(episode_length=3))
    obs = buffer.observations["obs"][:rows, 0]
    # two full episodes of 3 steps (4 rows each) and the start of a third
    assert obs[:, 0].tolist()[:8] == [0, 1, 2, 3, 0, 1, 2, 3]
    assert obs[:, 1].tolist()[:8] == [0, 0, 0, 0, 1, 1, 1, 1]  # the final observation, not the next reset
    assert buffer.rewards[:8, 0].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert buffer.is_terminal[:8, 0].tolist() == [False, False, False, True] * 2
    assert buffer.is_last[:8, 0].tolist() == [False, False, False, True] * 2
    assert buffer.is_first[:8, 0].tolist() == [True, False, False, False] * 2


def test_truncation_through_learn_is_not_termination():
    import gymnasium as gym
    from envs import CounterEnv

    buffer, rows = _counter_model(gym.wrappers.TimeLimit(CounterEnv(episode_length=3), max_episode_steps=2))
    obs = buffer.observations["obs"][:rows, 0]
    assert obs[:6, 0].tolist() == [0, 1, 2, 0, 1, 2]  # the truncated episode keeps its real last frame
    assert buffer.is_terminal[:6, 0].tolist() == [False] * 6  # continue target stays 1: truncation bootstraps
    assert buffer.is_last[:6, 0].tolist() == [False, False, True] * 2
