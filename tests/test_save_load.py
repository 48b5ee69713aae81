"""Save/load: identical parameters, optimizer states and threaded action sequences; clear errors."""

import io
import zipfile

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import TINY, fast
from envs import SpaceEnv
from gymnasium import spaces
from stable_baselines3 import DQN

import sb3_dreamer
from sb3_dreamer import DreamerV2, SequenceReplayBuffer


@pytest.fixture(scope="module", params=["DreamerV2", "DreamerV3"])
def trained(request):
    cls = getattr(sb3_dreamer, request.param)
    model = cls("MinAtar/Breakout-v1", policy_kwargs=TINY, seed=1, device="cpu", buffer_size=5000, **fast(cls))
    model.learn(120)
    return model


def _rollout(model, env, steps=25, seed=3):
    obs, _ = env.reset(seed=seed)
    state, start, actions = None, np.ones(1, bool), []
    for _ in range(steps):
        action, state = model.predict(obs[None], state=state, episode_start=start, deterministic=True)
        obs, _, terminated, truncated, _ = env.step(int(action[0]))
        start = np.array([terminated or truncated])
        actions.append(int(action[0]))
    return actions, state


def _optimizer_states_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()
    for key in sa["state"]:
        for name, value in sa["state"][key].items():
            assert th.equal(th.as_tensor(value), th.as_tensor(sb["state"][key][name])), (key, name)


def test_save_load_identical(trained, tmp_path):
    path = tmp_path / "model.zip"
    trained.save(path)
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
    assert {
        "policy.pth",
        "policy.wm_optimizer.pth",
        "policy.actor_optimizer.pth",
        "policy.critic_optimizer.pth",
    } <= names
    env = gym.make("MinAtar/Breakout-v1")
    loaded = type(trained).load(path, env=env, device="cpu")
    for (name, a), (_, b) in zip(trained.policy.state_dict().items(), loaded.policy.state_dict().items(), strict=True):
        assert th.equal(a, b), name
    for opt in ("wm_optimizer", "actor_optimizer", "critic_optimizer"):
        _optimizer_states_equal(getattr(trained.policy, opt), getattr(loaded.policy, opt))
    assert loaded.num_timesteps == trained.num_timesteps and loaded._n_updates == trained._n_updates
    for name in ("sequence_length", "gamma", "train_freq", "gradient_steps", "kl_balance", "dyn_scale", "model_size"):
        assert getattr(loaded, name, None) == getattr(trained, name, None), name
    if isinstance(trained, sb3_dreamer.DreamerV3):  # the return normaliser's EMAs are saved with the policy
        assert trained.policy.return_normalizer.high > 0
        assert th.equal(loaded.policy.return_normalizer.high, trained.policy.return_normalizer.high)
    actions_a, state_a = _rollout(trained, gym.make("MinAtar/Breakout-v1"))
    actions_b, state_b = _rollout(loaded, gym.make("MinAtar/Breakout-v1"))
    assert actions_a == actions_b
    for a, b in zip(state_a, state_b, strict=True):
        assert np.array_equal(a, b)
    # training continues after load (buffer restored from a separate file or refilled)
    before = [p.clone() for p in loaded.policy.world_model.parameters()]
    loaded.learn(60, reset_num_timesteps=False)
    assert loaded.num_timesteps >= trained.num_timesteps + 60
    assert any(not th.equal(a, b) for a, b in zip(before, loaded.policy.world_model.parameters(), strict=True))


def test_state_threading_matters(trained):
    """Threaded state gives a different belief than restarting every step (so the test above can fail)."""
    env = gym.make("MinAtar/Breakout-v1")
    obs, _ = env.reset(seed=0)
    _, s1 = trained.predict(obs[None], episode_start=np.ones(1, bool), deterministic=True)
    _, s2 = trained.predict(obs[None], state=s1, episode_start=np.zeros(1, bool), deterministic=True)
    _, s3 = trained.predict(obs[None], state=s1, episode_start=np.ones(1, bool), deterministic=True)
    assert not np.allclose(s2[0], s1[0])
    assert np.allclose(s3[0], s1[0])  # episode_start resets to the same belief


def test_replay_buffer_round_trip(trained, tmp_path):
    path = tmp_path / "buffer.pkl"
    trained.save_replay_buffer(path)
    model = type(trained)("MinAtar/Breakout-v1", policy_kwargs=TINY, **fast(type(trained)))
    model.load_replay_buffer(path)
    a, b = trained.replay_buffer, model.replay_buffer
    assert isinstance(b, SequenceReplayBuffer)
    assert np.array_equal(a.observations["obs"], b.observations["obs"]) and a.observations["obs"].dtype == np.bool_
    for name in ("actions", "rewards", "is_first", "is_terminal", "is_last", "positions", "stream_full"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    np.random.seed(0)
    batch_a = a.sample_sequences(4, 8)
    np.random.seed(0)
    batch_b = b.sample_sequences(4, 8)
    assert th.equal(batch_a.observations["obs"], batch_b.observations["obs"])
    model.learn(10)  # sampling and training work on the restored buffer


def _filled_buffer(buffer_size, steps, n_envs=2):
    space = spaces.Box(0, 255, (6, 6, 3), np.uint8)
    buffer = SequenceReplayBuffer(buffer_size, space, spaces.Discrete(3), device="cpu", n_envs=n_envs)
    rng = np.random.default_rng(0)
    for t in range(steps):
        obs, nxt = (rng.integers(0, 256, (n_envs, 6, 6, 3), dtype=np.uint8) for _ in range(2))
        done = np.array([t % 7 == 6, t % 11 == 10][:n_envs])
        buffer.add(obs, nxt, rng.integers(0, 3, (n_envs, 1)), rng.random(n_envs), done, [{}] * n_envs)
    return buffer


def _buffers_equal(a, b):
    assert np.array_equal(a.observations["obs"], b.observations["obs"])
    for name in ("actions", "rewards", "is_first", "is_terminal", "is_last", "positions", "stream_full"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.buffer_size == b.buffer_size and a.full == b.full and a.pos == b.pos


@pytest.mark.parametrize("steps", [50, 400])  # 400 steps wrap the 2 x 300-row streams
def test_replay_buffer_pickles_only_written_rows(steps):
    import pickle

    buffer = _filled_buffer(600, steps)
    data = pickle.dumps(buffer)
    restored = pickle.loads(data)
    _buffers_equal(buffer, restored)
    np.random.seed(1)
    batch_a = buffer.sample_sequences(6, 10)
    np.random.seed(1)
    batch_b = restored.sample_sequences(6, 10)
    assert th.equal(batch_a.observations["obs"], batch_b.observations["obs"])
    assert all(th.equal(x, y) for x, y in zip(batch_a[1:], batch_b[1:], strict=True))
    rows = min(steps + steps // 7 + 1, 300)  # rows written to the longer stream (resets add a row)
    assert len(data) < rows * 2 * (6 * 6 * 3 + 20) + 20_000  # ~ the rows written, not all 600
    if steps == 50:
        assert len(pickle.dumps(_filled_buffer(60_000, steps))) < len(data) + 1000  # independent of buffer_size


def test_replay_buffer_loads_whole_pickles_of_older_versions():
    import pickle

    buffer = _filled_buffer(600, 50)
    old = pickle.loads(pickle.dumps(buffer))
    state = dict(old.__dict__)  # what 0.7.0 pickled: every array at full size
    restored = SequenceReplayBuffer.__new__(SequenceReplayBuffer)
    restored.__setstate__(state)
    _buffers_equal(buffer, restored)


def test_keyword_and_positional_construction(algo):
    env = SpaceEnv(spaces.Box(-1, 1, (3,), np.float32), spaces.Discrete(2))
    by_keyword = algo(policy="MlpPolicy", env=env, policy_kwargs=TINY)
    positional = algo("MlpPolicy", env, policy_kwargs=TINY)
    env_first = algo(env, policy_kwargs=TINY)
    assert by_keyword.env is not None and positional.env is not None and env_first.env is not None
    with pytest.raises(ValueError, match="needs an environment"):
        algo()


def test_corrupted_zip_raises(trained, tmp_path):
    path = tmp_path / "model.zip"
    trained.save(path)
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(path.read_bytes()[:500])
    cls = type(trained)
    with pytest.raises(ValueError, match=r"truncated\.zip"):
        cls.load(truncated)
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="not a valid zip"):
        cls.load(garbage)
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("something", "else")
    with pytest.raises(ValueError, match="no 'data' member"):
        cls.load(empty)


def test_foreign_zip_raises(algo, tmp_path):
    path = tmp_path / "dqn.zip"
    DQN("MlpPolicy", "CartPole-v1", learning_starts=0).save(path)
    with pytest.raises(ValueError, match=r"dqn\.zip was saved by another algorithm"):
        algo.load(path)


def test_other_dreamer_version_raises(tmp_path):
    path = tmp_path / "v2.zip"
    DreamerV2("MinAtar/Breakout-v1", policy_kwargs=TINY).save(path)
    with pytest.raises(ValueError, match=r"saved by sb3_dreamer's DreamerV2, not by DreamerV3"):
        sb3_dreamer.DreamerV3.load(path)


def test_load_from_file_object(trained):
    buffer = io.BytesIO()
    trained.save(buffer)
    buffer.seek(0)
    loaded = type(trained).load(buffer, device="cpu")
    assert loaded.num_timesteps == trained.num_timesteps


def test_mismatched_env_raises(trained, tmp_path):
    path = tmp_path / "model.zip"
    trained.save(path)
    with pytest.raises(ValueError, match="Observation spaces do not match"):
        type(trained).load(path, env=gym.make("MinAtar/Freeway-v1"))  # 7 channels instead of 4
    with pytest.raises(ValueError, match="Action spaces do not match"):
        type(trained).load(path, env=gym.make("MinAtar/Asterix-v1"))  # 5 actions instead of 3


def _saved_model_fixtures():
    import json
    from pathlib import Path

    here = Path(__file__).resolve().parent / "fixtures"
    return [(here / name, record) for name, record in json.loads((here / "saved_models.json").read_text()).items()]


@pytest.mark.parametrize("path,record", _saved_model_fixtures(), ids=lambda v: getattr(v, "name", ""))
def test_models_saved_by_earlier_releases_predict_the_same(path, record):
    """A zip saved by an earlier release (``tests/fixtures/make_saved_models.py``) loads with this
    code and predicts the actions and recurrent states it predicted when it was saved."""
    from fixtures.make_saved_models import predictions

    model = getattr(sb3_dreamer, record["algorithm"]).load(path, device="cpu")
    got = predictions(model)
    assert got["actions"] == record["actions"]
    for now, then in zip(got["state"], record["state"], strict=True):
        assert np.allclose(now, then, atol=1e-4)
