"""Every supported space trains a few steps; unsupported ones raise at construction; bad values raise."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import FAST, TINY, fast
from envs import BadValueEnv, SpaceEnv
from gymnasium import spaces

from sb3_dreamer import DreamerV2

IMAGE_SPACES = {
    "uint8_hwc": spaces.Box(0, 255, (16, 16, 3), np.uint8),
    "uint8_chw": spaces.Box(0, 255, (3, 16, 16), np.uint8),
    "uint8_2d": spaces.Box(0, 255, (12, 12), np.uint8),
    "uint8_5x5": spaces.Box(0, 255, (5, 5, 1), np.uint8),
    "odd_size": spaces.Box(0, 255, (11, 13, 2), np.uint8),
    "bool_minatar": spaces.Box(0, 1, (10, 10, 4), bool),
    "bool_square": spaces.Box(0, 1, (10, 10, 10), bool),
    "float_chw": spaces.Box(0.0, 1.0, (4, 9, 9), np.float32),
}
VECTOR_SPACES = {
    "vector": spaces.Box(-1.0, 1.0, (6,), np.float32),
    "vector_2d": spaces.Box(-1.0, 1.0, (2, 3), np.float64),
    "dict": spaces.Dict(
        {"image": spaces.Box(0, 255, (8, 8, 3), np.uint8), "state": spaces.Box(-1, 1, (5,), np.float32)}
    ),
}
ACTION_SPACES = {"discrete": spaces.Discrete(3), "box": spaces.Box(np.array([-2.0, 0.0]), np.array([3.0, 1.0]))}


def _train(algo, obs_space, action_space, steps=60):
    model = algo(SpaceEnv(obs_space, action_space), policy_kwargs=TINY, seed=0, device="cpu", **fast(algo))
    model.learn(steps)
    assert model._n_updates > 0
    assert all(th.isfinite(p).all() for p in model.policy.parameters())
    obs = obs_space.sample()
    action, state = model.predict(obs, deterministic=True)
    assert action_space.contains(np.asarray(action, dtype=action_space.dtype))
    assert len(state) == 3 and state[0].shape == (1, TINY["deter_size"])
    return model


@pytest.mark.parametrize("name", list(IMAGE_SPACES) + list(VECTOR_SPACES))
def test_observation_spaces_train(algo, name):
    space = {**IMAGE_SPACES, **VECTOR_SPACES}[name]
    model = _train(algo, space, spaces.Discrete(3))
    parts = model.policy.parts
    if name in IMAGE_SPACES:
        assert parts[0].is_image and len(model.policy.world_model.encoder.cnns) == 1


def test_image_layout_inference():
    from sb3_dreamer.common.observations import observation_parts

    assert observation_parts(IMAGE_SPACES["bool_minatar"])[0].shape == (4, 10, 10)
    assert observation_parts(IMAGE_SPACES["bool_square"])[0].channels_last  # MinAtar Seaquest
    assert observation_parts(IMAGE_SPACES["float_chw"])[0].shape == (4, 9, 9)
    assert observation_parts(IMAGE_SPACES["uint8_chw"])[0].shape == (3, 16, 16)
    assert observation_parts(spaces.Box(0.0, 1.0, (6, 9, 9)), channels_last=True)[0].shape == (9, 6, 9)
    # uint8 pixels follow SB3's VecTransposeImage, before and after it, whatever channels_last says
    hwc = spaces.Box(0, 255, (64, 48, 3), np.uint8)
    chw = spaces.Box(0, 255, (3, 64, 48), np.uint8)
    for flag in (None, True, False):
        assert observation_parts(hwc, channels_last=flag)[0].shape == (3, 64, 48)
        assert observation_parts(chw, channels_last=flag)[0].shape == (3, 64, 48)


def test_cnn_follows_the_papers_on_64x64_and_adds_a_stem_below_16_pixels():
    from torch import nn

    from sb3_dreamer.common.encoders import ConvDecoder, ConvEncoder
    from sb3_dreamer.common.networks import V3_STYLE

    encoder = ConvEncoder(3, 64, 64, depth=8, style=V3_STYLE)  # DreamerV3: 64 -> 32 -> 16 -> 8 -> 4
    convs = [m for m in encoder.net if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (3, 8, (4, 4), (2, 2)),
        (8, 16, (4, 4), (2, 2)),
        (16, 32, (4, 4), (2, 2)),
        (32, 64, (4, 4), (2, 2)),
    ]
    assert encoder.out_dim == 64 * 4 * 4
    decoder = ConvDecoder(20, encoder, 3, V3_STYLE)
    assert isinstance(decoder.net[-1], nn.ConvTranspose2d) and decoder.net[-1].out_channels == 3
    assert decoder(th.randn(2, 20)).shape == (2, 3, 64, 64)
    small = ConvEncoder(4, 10, 10, depth=8)  # MinAtar: a 3x3 stem, then one stage to 5x5
    convs = [m for m in small.net if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [(8, (3, 3), (1, 1)), (16, (4, 4), (2, 2))]
    assert ConvDecoder(20, small, 4)(th.randn(2, 20)).shape == (2, 4, 10, 10)


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_cnn_activations_are_channels_last_and_match_the_plain_layout(padding):
    """Every feature map of both CNNs is stored NHWC (oneDNN's layout without reorders); the
    outputs equal the same layers run on plain NCHW maps."""
    from torch import nn

    from sb3_dreamer.common.encoders import ConvDecoder, ConvEncoder

    th.manual_seed(0)
    encoder = ConvEncoder(3, 64, 64, depth=4, padding=padding)
    decoder = ConvDecoder(20, encoder, 3)
    layouts = []
    for module in [*encoder.net, *decoder.net]:
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            module.register_forward_hook(
                lambda _m, _i, out: layouts.append(out.is_contiguous(memory_format=th.channels_last))
            )
    images = th.rand(2, 3, 64, 64)  # plain NCHW in
    feat = th.randn(2, 20)
    embed, recon = encoder(images), decoder(feat)
    assert len(layouts) == 8 and all(layouts)
    with th.no_grad():
        first = decoder.linear(feat).reshape(2, *decoder.start)
        if padding == "valid":
            first = nn.ConvTranspose2d.forward(decoder.net[0], first)
        plain_recon = decoder.net[1 if padding == "valid" else 0 :](first.contiguous())
        plain_embed = encoder.net(images).reshape(2, -1)
    assert th.allclose(embed, plain_embed, atol=1e-5) and th.allclose(recon, plain_recon, atol=1e-5)


def test_dreamerv2_uses_the_papers_valid_cnn_on_64x64_images():
    """DreamerV1/V2's 64x64 CNN: valid 4x4 stride-2 stages to 2x2, a decoder from a 1x1 map with
    5, 5, 6, 6 transposed kernels (danijar/dreamerv2 ``ConvEncoder``/``ConvDecoder``)."""
    from torch import nn

    from sb3_dreamer import DreamerPolicy, DreamerV3
    from sb3_dreamer.common.encoders import ConvDecoder, ConvEncoder

    encoder = ConvEncoder(3, 64, 64, depth=8, padding="valid")
    assert encoder.sizes == [(64, 64), (31, 31), (14, 14), (6, 6), (2, 2)]
    assert [c.padding for c in encoder.net if isinstance(c, nn.Conv2d)] == [(0, 0)] * 4
    assert encoder.out_dim == 64 * 2 * 2 == 32 * 8
    decoder = ConvDecoder(20, encoder, 3)
    deconvs = [m for m in decoder.net if isinstance(m, nn.ConvTranspose2d)]
    assert [(d.in_channels, d.out_channels, d.kernel_size[0]) for d in deconvs] == [
        (256, 32, 5),
        (32, 16, 5),
        (16, 8, 6),
        (8, 3, 6),
    ]
    assert not isinstance(decoder.net[0], nn.ELU)  # no activation on the 1x1 map (danijar: Dense, reshape)
    feat = th.randn(2, 20)
    assert decoder(feat).shape == (2, 3, 64, 64)
    first = nn.ConvTranspose2d.forward(decoder.net[0], decoder.linear(feat).reshape(2, 256, 1, 1))
    reference = decoder.net[1:](first)  # the transposed convolutions as such
    assert th.allclose(decoder(feat), reference, atol=1e-5)
    assert not ConvEncoder(3, 48, 64, depth=8, padding="valid").valid  # the papers define 64x64 only
    with pytest.raises(ValueError, match="cnn_padding"):
        ConvEncoder(3, 64, 64, depth=8, padding="full")

    rgb = SpaceEnv(spaces.Box(0, 255, (64, 64, 3), np.uint8), spaces.Discrete(2))
    assert DreamerV2(rgb, policy_kwargs=TINY, **FAST).policy.world_model.encoder.cnns["obs"].valid
    assert not DreamerV3(rgb, policy_kwargs=TINY, **fast(DreamerV3)).policy.world_model.encoder.cnns["obs"].valid
    # files saved before the option existed have no "cnn_padding": the policy's default is their layout
    policy = DreamerPolicy(rgb.observation_space, rgb.action_space, lambda _: 1e-4, **TINY)
    assert not policy.world_model.encoder.cnns["obs"].valid


def test_uint8_hwc_env_with_channels_last_flag_trains(algo):
    model = algo(
        SpaceEnv(IMAGE_SPACES["uint8_hwc"], spaces.Discrete(2)),
        policy_kwargs={**TINY, "channels_last": True},
        **fast(algo),
    )
    model.learn(50)
    assert model.policy.parts[0].shape == (3, 16, 16)


@pytest.mark.parametrize("name", list(ACTION_SPACES))
def test_action_spaces_train(algo, name):
    model = _train(algo, spaces.Box(-1.0, 1.0, (4,), np.float32), ACTION_SPACES[name])
    assert model.actor_grad_mix == (1.0 if name == "discrete" else 0.0)  # rho: REINFORCE vs dynamics


def test_box_actions_are_rescaled_to_bounds():
    space = ACTION_SPACES["box"]
    model = DreamerV2(SpaceEnv(spaces.Box(-1, 1, (3,), np.float32), space), policy_kwargs=TINY, **fast(DreamerV2))
    extremes = model.policy.to_env_action(th.tensor([[-1.0, 1.0], [1.0, -1.0]]))
    assert extremes.tolist() == [[-2.0, 1.0], [3.0, 0.0]]
    assert np.allclose(model.policy.to_buffer_action(extremes), [[-1.0, 1.0], [1.0, -1.0]])


@pytest.mark.parametrize(
    "obs_space, match",
    [
        (spaces.Tuple((spaces.Box(-1, 1, (2,)), spaces.Box(-1, 1, (2,)))), "Tuple"),
        (spaces.MultiBinary(4), "MultiBinary"),
        (spaces.Discrete(5), "Discrete"),
        (spaces.Text(5), "Text"),
        (spaces.Dict({"a": spaces.Box(-1, 1, (2,)), "b": spaces.Discrete(3)}), "Discrete"),
        (spaces.Box(0, 255, (4, 4, 3), np.uint8), "at least 5x5"),
    ],
)
def test_unsupported_observation_spaces_raise(algo, obs_space, match):
    with pytest.raises(TypeError, match=match):
        algo(SpaceEnv(obs_space, spaces.Discrete(2)), policy_kwargs=TINY)


@pytest.mark.parametrize(
    "action_space, match",
    [
        (spaces.MultiDiscrete([2, 3]), "MultiDiscrete"),
        (spaces.MultiBinary(3), "MultiBinary"),
        (spaces.Box(-np.inf, np.inf, (2,)), "bounded Box"),
    ],
)
def test_unsupported_action_spaces_raise(algo, action_space, match):
    with pytest.raises(TypeError, match=match):
        algo(SpaceEnv(spaces.Box(-1, 1, (3,), np.float32), action_space), policy_kwargs=TINY)


@pytest.mark.parametrize("where", ["observation", "reward"])
def test_non_finite_inputs_raise_before_touching_weights(algo, where):
    model = algo(BadValueEnv(where), policy_kwargs=TINY, **{**fast(algo), "learning_starts": 1})
    before = [p.detach().clone() for p in model.policy.parameters()]
    with pytest.raises(ValueError, match="non-finite " + where):
        model.learn(50)
    assert all(th.equal(a, b) for a, b in zip(before, model.policy.parameters(), strict=True))


def test_predict_rejects_nan_observation(algo):
    model = algo(BadValueEnv("observation"), policy_kwargs=TINY, **fast(algo))
    with pytest.raises(ValueError, match="non-finite observation"):
        model.predict(np.array([0.0, np.nan, 0.0], np.float32))


def test_minatar_bool_observations_stay_one_byte(algo):
    model = algo("MinAtar/Breakout-v1", policy_kwargs=TINY, buffer_size=1000, **fast(algo))
    assert model.replay_buffer.observations["obs"].dtype == np.bool_
    assert model.replay_buffer.observations["obs"].nbytes == 1000 * 10 * 10 * 4
    assert not hasattr(model.replay_buffer, "next_observations") or model.replay_buffer.next_observations is None
    model.learn(60)
    assert model.replay_buffer.size() > 60


def test_gym_env_instance_and_vec_env(algo):
    from stable_baselines3.common.env_util import make_vec_env

    venv = make_vec_env(lambda: gym.make("MinAtar/Breakout-v1"), n_envs=2, seed=0)
    model = algo(venv, policy_kwargs=TINY, **fast(algo))
    model.learn(80)
    assert model.replay_buffer.stored().min() >= 40
