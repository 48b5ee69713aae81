"""DreamerV2's ablation switches (paper Sec. 4, Figure 5): what each one cuts, checked on gradients."""

import pytest
import torch as th
from conftest import FAST, TINY

from sb3_dreamer import DreamerV2
from sb3_dreamer.common.latents import CategoricalLatent, GaussianLatent


def _model(**kwargs):
    return DreamerV2("MinAtar/Breakout-v1", policy_kwargs=TINY, seed=0, buffer_size=2000, **FAST, **kwargs)


@pytest.fixture(scope="module")
def batch():
    model = _model()
    model.learn(60)
    return model.replay_buffer.sample_sequences(4, 8)


def _grads(model, batch, scales):
    """Gradient norms of the encoder and each head after one world-model loss with ``scales``."""
    wm = model.policy.world_model
    wm.zero_grad(set_to_none=True)
    th.manual_seed(0)  # the same posterior samples for both models
    loss, _, _ = wm.loss(batch, model._kl_terms, scales, **model._loss_options())
    loss.backward()

    def norm(module):
        grads = [p.grad.norm() for p in module.parameters() if p.grad is not None]
        return float(th.stack(grads).sum()) if grads else 0.0

    return {"encoder": norm(wm.encoder), "decoder": norm(wm.decoder), "reward": norm(wm.reward_head)}


def _only(model, term):
    return {name: float(name == term) for name in model.loss_scales}


@pytest.mark.parametrize(
    "flag, term, head", [("image_gradients", "reconstruction", "decoder"), ("reward_gradients", "reward", "reward")]
)
def test_detached_heads_shape_no_representation(batch, flag, term, head):
    full, cut = _model(), _model(**{flag: False})
    cut.policy.load_state_dict(full.policy.state_dict())
    on, off = _grads(full, batch, _only(full, term)), _grads(cut, batch, _only(cut, term))
    assert on["encoder"] > 0.0 and off["encoder"] == 0.0  # the term no longer reaches the encoder
    assert off[head] == pytest.approx(on[head], rel=1e-5)  # the head itself learns as before


def test_kl_balancing_off_is_the_plain_kl():
    model = _model(kl_balancing=False, kl_scale=0.5, free_nats=0.2)
    assert model.loss_scales == {"reconstruction": 1.0, "reward": 1.0, "continue": 5.0, "kl": 0.5}
    kl = model.policy.world_model.rssm.latent.kl
    post, prior = th.randn(6, 4, 4, requires_grad=True), th.randn(6, 4, 4, requires_grad=True)
    terms, _ = model._kl_terms(post, prior)
    assert set(terms) == {"kl"}
    assert terms["kl"].item() == pytest.approx(max(0.2, kl(post, prior).mean().item()), rel=1e-6)
    # one KL trains both sides: the gradient of the plain term is that of KL[q || p] itself
    grads = th.autograd.grad(terms["kl"], (post, prior))
    expected = th.autograd.grad(kl(post, prior).mean(), (post, prior))
    for got, want in zip(grads, expected, strict=True):
        assert th.allclose(got, want)
    balanced, _ = _model()._kl_terms(post, prior)
    assert set(balanced) == {"dyn", "rep"}
    model.learn(60)
    assert "train/kl_loss" in model.logger.name_to_value and "train/dyn_loss" not in model.logger.name_to_value


def test_gaussian_latent_switch():
    model = _model(latent="gaussian")
    assert isinstance(model.policy.world_model.rssm.latent, GaussianLatent)
    assert isinstance(_model().policy.world_model.rssm.latent, CategoricalLatent)
    with pytest.raises(ValueError, match="latent must be one of"):
        _model(latent="beta")
    with pytest.raises(ValueError, match="contradicts"):
        DreamerV2("MinAtar/Breakout-v1", latent="gaussian", policy_kwargs={**TINY, "latent": "categorical"})


@pytest.mark.parametrize("value, rho", [("reinforce", 1.0), ("dynamics", 0.0), (0.25, 0.25), (None, 1.0)])
def test_actor_gradient_names(value, rho):
    assert _model(actor_grad_mix=value).actor_grad_mix == rho  # None: REINFORCE for Discrete actions


@pytest.mark.parametrize("value", ["both", 1.5, -0.1])
def test_bad_actor_gradient_raises_naming_the_valid_ones(value):
    with pytest.raises(ValueError, match="reinforce"):
        _model(actor_grad_mix=value)


def test_a_kl_term_without_a_scale_raises(batch):
    model = _model()
    scales = {k: v for k, v in model.loss_scales.items() if k != "rep"}
    with pytest.raises(ValueError, match=r"lacks \['rep'\]"):
        model.policy.world_model.loss(batch, model._kl_terms, scales)
