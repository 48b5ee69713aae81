"""Dream videos: the posterior context, the open-loop prior under the real actions, MinAtar's
colours, the command line and the TensorBoard callback, and clear errors for bad input."""

import os

import numpy as np
import pytest
import torch as th
from conftest import FAST, TINY
from stable_baselines3 import DQN
from stable_baselines3.common.logger import Video

from sb3_dreamer import DreamerV2
from sb3_dreamer.cli import main
from sb3_dreamer.common.rssm import RSSMState
from sb3_dreamer.dream import DreamVideoCallback, dream, minatar_palette, render, saved_algorithm
from sb3_dreamer.envs import make_env

ENV = "MinAtar/Breakout-v1"


@pytest.fixture(scope="module")
def model():
    model = DreamerV2(ENV, policy_kwargs=TINY, seed=0, buffer_size=2000, **FAST)
    model.learn(120)
    return model


def test_minatar_palette_is_minatars_own():
    import seaborn as sns  # MinAtar's render dependency

    np.testing.assert_allclose(minatar_palette(4)[1:], np.array(sns.color_palette("cubehelix", 4)), atol=1e-6)
    assert (minatar_palette(4)[0] == 0).all()


def test_render_binary_planes_takes_the_highest_set_plane():
    planes = np.zeros((1, 3, 5, 5), np.float32)
    planes[0, 0, 1, 1] = planes[0, 2, 1, 1] = 1.0  # two planes set: the higher wins
    planes[0, 1, 2, 3] = 0.6  # a predicted probability above 1/2 is set
    planes[0, 1, 4, 4] = 0.4
    frame = render(type("Part", (), {"dtype": "bool"})(), planes)[0]
    palette = (minatar_palette(3) * 255).round().astype(np.uint8)
    assert (frame[1, 1] == palette[3]).all() and (frame[2, 3] == palette[2]).all()
    assert (frame[4, 4] == 0).all() and (frame[0, 0] == 0).all()


def test_dream_is_posterior_then_open_loop_prior_under_the_real_actions(model):
    env = make_env(ENV)
    before = th.random.get_rng_state()
    result = dream(model, env, context=3, horizon=4, seed=5)
    assert th.equal(th.random.get_rng_state(), before)  # the training's random stream is untouched
    length = len(result.true)
    assert result.context == 3 and result.true.shape == result.predicted.shape == (length, 10, 10, 3)
    assert result.true.dtype == np.uint8 and len(result.errors) == length <= 7
    # the last frames are the prior's modes from the third posterior state, under the same actions
    again = dream(model, make_env(ENV), context=3, horizon=4, seed=5)
    np.testing.assert_array_equal(result.predicted, again.predicted)
    np.testing.assert_allclose(result.errors, again.errors)
    video = result.video(scale=2)
    assert video.shape == (length, 10 * 2 + 4, 3 * (10 * 2 + 4), 3)
    assert (video[0, 0, 0] == (0, 200, 0)).all() and (video[-1, 0, 0] == (220, 0, 0)).all()


def test_dream_prediction_matches_a_hand_rolled_prior(model):
    from sb3_dreamer.dream import _play

    result = dream(model, make_env(ENV), context=2, horizon=1, seed=3)
    policy, wm = model.policy, model.policy.world_model
    with th.no_grad(), th.random.fork_rng(devices=[]):  # the same steps as dream, by hand
        th.manual_seed(3)
        observations, actions, _ = _play(model, make_env(ENV), 3, 3)
        inputs = wm.preprocess({"obs": th.as_tensor(np.stack([o["obs"] for o in observations])[None])}, 2)
        taken = policy.action_to_tensor(policy.to_buffer_action(actions)).float()
        prev = th.cat([th.zeros_like(taken[:1]), taken[:2]], 0)[None]  # a_{t-1}
        post, _ = wm.rssm.observe(wm.encoder({"obs": inputs["obs"][:, :2]}), prev[:, :2], th.tensor([[1.0, 0.0]]))
        state = wm.rssm.img_step(RSSMState(*(x[:, 1] for x in post)), prev[:, 2], sample=False)  # prior mode
        nll = wm.decoder.nll(state.feat, {"obs": inputs["obs"][:, 2]})
        post_nll = wm.decoder.nll(post.feat[0], {"obs": inputs["obs"][0, :2]})
    assert result.errors[2] == pytest.approx(float(nll[0]), rel=1e-5)
    np.testing.assert_allclose(result.errors[:2], post_nll.numpy(), rtol=1e-5)


def test_command_line_writes_gif_and_errors_plot(model, tmp_path, capsys):
    path = tmp_path / "m.zip"
    model.save(path)
    out = str(tmp_path / "dream.gif")
    main(["dream", str(path), "--env", ENV, "--out", out, "--context", "2", "--horizon", "3"])
    assert os.path.getsize(out) > 0 and os.path.exists(str(tmp_path / "dream.errors.png"))
    printed = capsys.readouterr().out
    assert "DreamerV2 on MinAtar/Breakout-v1" in printed and "dream" in printed
    import imageio.v3 as iio

    frames = iio.imread(out, index=None)
    assert frames.shape[0] <= 5


def test_bad_input_raises(model, tmp_path):
    dqn = tmp_path / "dqn.zip"
    DQN("MlpPolicy", "CartPole-v1", learning_starts=0).save(dqn)
    with pytest.raises(ValueError, match="saved by another algorithm"):
        saved_algorithm(str(dqn))
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a model saved by sb3-dreamer"):
        saved_algorithm(str(junk))
    with pytest.raises(ValueError, match="does not match the model"):
        dream(model, make_env("MinAtar/Asterix-v1"))
    vectors = DreamerV2("CartPole-v1", policy_kwargs=TINY, **FAST)
    with pytest.raises(ValueError, match="needs an image observation"):
        dream(vectors, make_env("CartPole-v1"))

    class NoDecoder(DreamerV2):
        @property
        def loss_scales(self):
            return {**super().loss_scales, "reconstruction": 0.0}

    no_decoder = NoDecoder(ENV, policy_kwargs=TINY, **FAST)
    with pytest.raises(ValueError, match="without its decoder"):
        dream(no_decoder, make_env(ENV))


def test_callback_logs_a_tensorboard_video_without_changing_training():
    def train(callback):
        m = DreamerV2(ENV, policy_kwargs=TINY, seed=2, buffer_size=2000, **FAST)
        m.learn(100, callback=callback)
        return m, None

    callback = DreamVideoCallback(make_env(ENV), dream_freq=50, context=2, horizon=3)
    seen = {}
    with_dreams, _ = train(callback)
    original = with_dreams.logger.record

    def spy(key, value, exclude=None):
        seen[key] = value
        original(key, value, exclude)

    with_dreams.logger.record = spy
    callback._next = with_dreams.num_timesteps  # dream at the next step
    callback.num_timesteps = with_dreams.num_timesteps
    callback._on_step()
    assert isinstance(seen["dream/video"], Video) and seen["dream/video"].frames.shape[:3] == (1, 5, 3)
    assert np.isfinite(seen["dream/open_loop_nll"])
    plain, _ = train(None)
    for (name, a), (_, b) in zip(
        with_dreams.policy.state_dict().items(), plain.policy.state_dict().items(), strict=True
    ):
        assert th.equal(a, b), name  # dreaming during training leaves training bit for bit as it was
