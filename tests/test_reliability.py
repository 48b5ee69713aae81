"""Reliability: reproducible runs, exact resume, atomic saves, clear load errors, skipped updates, flat memory."""

import gc
import io
import os
import pickle
import stat
import zipfile

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import TINY, fast
from envs import PatternEnv
from stable_baselines3.common.callbacks import CheckpointCallback
from stable_baselines3.common.logger import configure

import sb3_dreamer
from sb3_dreamer.common import behavior

TOTAL = 180  # env steps of every run below; PatternEnv episodes last 9 steps


def _make(cls, **kwargs):
    args = {**fast(cls), "learning_starts": 70, "buffer_size": 2000, **kwargs}
    return cls(PatternEnv(), policy_kwargs=TINY, seed=3, device="cpu", **args)


def _params(model):
    return [p.detach().clone() for p in model.policy.state_dict().values()]


def _assert_same(a, b):
    for x, y in zip(_params(a), _params(b), strict=True):
        assert th.equal(x, y)
    assert a._n_updates == b._n_updates > 0


def _resume(cls, model_path, buffer_path):
    model = cls.load(model_path, env=PatternEnv(), device="cpu")
    model.load_replay_buffer(buffer_path)
    return model


@pytest.fixture(scope="module", params=["DreamerV2", "DreamerV3"])
def reference(request, tmp_path_factory):
    """An uninterrupted run, checkpointed every 64 steps by SB3's CheckpointCallback."""
    cls = getattr(sb3_dreamer, request.param)
    folder = tmp_path_factory.mktemp(request.param)
    model = _make(cls)
    model.learn(TOTAL, callback=CheckpointCallback(64, str(folder), save_replay_buffer=True))
    return model, folder


def test_same_seed_gives_identical_runs(reference):
    """Two runs with one seed: same parameters and same logged returns (checkpointing changes nothing)."""
    model, _ = reference
    again = _make(type(model))
    again.learn(TOTAL)
    _assert_same(model, again)
    returns = [info["r"] for info in model.ep_info_buffer]
    assert len(returns) == TOTAL // 9 and returns == [info["r"] for info in again.ep_info_buffer]


def test_save_and_resume_is_exact(reference, tmp_path):
    """save + save_replay_buffer at step 108, then load + load_replay_buffer + learn the rest."""
    model, _ = reference
    first = _make(type(model))
    first.learn(108)  # an episode boundary (12 x 9) and a rollout boundary
    first.save(tmp_path / "model")
    first.save_replay_buffer(tmp_path / "buffer")
    del first
    resumed = _resume(type(model), tmp_path / "model.zip", tmp_path / "buffer.pkl")
    resumed.learn(TOTAL - resumed.num_timesteps, reset_num_timesteps=False)
    _assert_same(model, resumed)


def test_checkpoint_callback_resume_is_exact(reference, tmp_path):
    """SB3 calls CheckpointCallback after env.step but before that step is stored: the checkpoint
    holds the state as of step 63 (7 episodes, 3 steps into a 4-step rollout, before learning_starts).
    Loading and saving it again (copying a checkpoint) keeps what resuming needs."""
    model, folder = reference
    cls = type(model)
    cls.load(folder / "rl_model_64_steps.zip").save(tmp_path / "copy.zip")
    resumed = _resume(cls, tmp_path / "copy.zip", folder / "rl_model_replay_buffer_64_steps.pkl")
    assert resumed.num_timesteps == 63 and resumed.replay_buffer.size() == 63 + 7
    resumed.learn(TOTAL - resumed.num_timesteps, reset_num_timesteps=False)
    _assert_same(model, resumed)


def test_resume_without_saved_random_state_differs(reference):
    """Negative control: drop the saved random state and the resumed run leaves the reference."""
    model, folder = reference
    resumed = _resume(type(model), folder / "rl_model_64_steps.zip", folder / "rl_model_replay_buffer_64_steps.pkl")
    resumed._resume = None
    resumed.learn(TOTAL - resumed.num_timesteps, reset_num_timesteps=False)
    assert any(not th.equal(x, y) for x, y in zip(_params(model), _params(resumed), strict=True))


# -- safe files ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model():
    model = _make(sb3_dreamer.DreamerV2, learning_starts=40)
    model.learn(60)
    return model


def _fail_mid_write(*args, **kwargs):
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("error", [OSError, KeyboardInterrupt])
def test_failed_save_keeps_previous_file(small_model, tmp_path, monkeypatch, error):
    path = tmp_path / "model.zip"
    small_model.save(path)
    before = path.read_bytes()
    raise_it = _fail_mid_write if error is OSError else lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt)
    with monkeypatch.context() as patch:
        patch.setattr(th, "save", raise_it)
        with pytest.raises(error):
            small_model.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.zip"]  # no temporary file left behind
    sb3_dreamer.DreamerV2.load(path)


def test_failed_replay_buffer_save_keeps_previous_file(small_model, tmp_path, monkeypatch):
    path = tmp_path / "buffer.pkl"
    small_model.save_replay_buffer(path)
    before = path.read_bytes()
    with monkeypatch.context() as patch:
        patch.setattr(pickle, "dump", _fail_mid_write)
        with pytest.raises(OSError, match="No space"):
            small_model.save_replay_buffer(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["buffer.pkl"]


def test_save_paths_behave_like_sb3(small_model, tmp_path):
    small_model.save(tmp_path / "new" / "folder" / "model")  # suffix added, folders created
    small_model.save_replay_buffer(tmp_path / "new" / "buffer")
    assert sorted(os.listdir(tmp_path / "new")) == ["buffer.pkl", "folder"]
    saved = tmp_path / "new" / "folder" / "model.zip"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(saved.stat().st_mode) == 0o666 & ~umask  # what open() would give
    saved.chmod(0o640)
    (tmp_path / "link.zip").symlink_to(saved)
    small_model.save(tmp_path / "link.zip")  # writes through the link, keeps the mode
    assert (tmp_path / "link.zip").is_symlink() and stat.S_IMODE(saved.stat().st_mode) == 0o640
    assert sorted(os.listdir(saved.parent)) == ["model.zip"]


def _rewrite(source, target, drop=(), replace=None):
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for name in src.namelist():
            if name not in drop:
                dst.writestr(name, replace(name, src.read(name)) if replace else src.read(name))


def test_load_errors_name_the_file_and_the_problem(small_model, tmp_path):
    path = tmp_path / "model.zip"
    small_model.save(path)
    cls = sb3_dreamer.DreamerV2

    _rewrite(path, tmp_path / "lacking.zip", drop=("policy.critic_optimizer.pth",))
    with pytest.raises(ValueError, match=r"lacking\.zip is incomplete: it lacks policy\.critic_optimizer\.pth"):
        cls.load(tmp_path / "lacking.zip")

    damaged = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("policy.pth")
    damaged[info.header_offset + 30 + len(info.filename) + info.compress_size // 2] ^= 0xFF
    (tmp_path / "damaged.zip").write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match=r"damaged\.zip is corrupted: its member 'policy\.pth' fails"):
        cls.load(tmp_path / "damaged.zip")

    def older_networks(name, content):  # what a file from a version with other module names looks like
        if name != "policy.pth":
            return content
        state = th.load(io.BytesIO(content))
        key = next(iter(state))
        state["old_" + key] = state.pop(key)
        buffer = io.BytesIO()
        th.save(state, buffer)
        return buffer.getvalue()

    _rewrite(path, tmp_path / "older.zip", replace=older_networks)
    with pytest.raises(ValueError, match=r"older\.zip holds networks that do not fit DreamerV2 of sb3-dreamer"):
        cls.load(tmp_path / "older.zip")


# -- numerical health ----------------------------------------------------------------------------


def _nan_part(model, monkeypatch, part):
    """Make the world-model or the actor loss (only) NaN for every following update."""
    if part == "world-model":
        loss = model.policy.world_model.loss

        def nan_loss(*args, **kwargs):
            total, posterior, metrics = loss(*args, **kwargs)
            return total * float("nan"), posterior, metrics

        monkeypatch.setattr(model.policy.world_model, "loss", nan_loss)
    else:  # ln p(a): from the logits imagination kept (Discrete REINFORCE) or from a second actor pass
        log_prob_entropy, log_prob = model.policy.actor.log_prob_entropy, behavior.categorical_log_prob

        def nan_log_prob_entropy(*args):
            return tuple(x * float("nan") for x in log_prob_entropy(*args))

        monkeypatch.setattr(model.policy.actor, "log_prob_entropy", nan_log_prob_entropy)
        monkeypatch.setattr(behavior, "categorical_log_prob", lambda *args: log_prob(*args) * float("nan"))


@pytest.mark.parametrize("part", ["world-model", "actor"])
def test_non_finite_update_is_skipped_counted_and_then_raises(algo, monkeypatch, part):
    model = _make(algo, learning_starts=40)
    model.learn(60)
    model.set_logger(configure(None, []))
    states = {
        name: [t.clone() for t in getattr(model.policy, name).state_dict().values()]
        for name in ("world_model", "actor")
    }
    optimizer = model.policy.wm_optimizer if part == "world-model" else model.policy.actor_optimizer
    adam_step = float(optimizer.state_dict()["state"][0]["step"])
    updates = model._n_updates
    with monkeypatch.context() as patch:
        _nan_part(model, patch, part)
        with pytest.warns(RuntimeWarning, match=f"non-finite {part} loss nan"):
            model.train(gradient_steps=3, batch_size=4)
        assert model.logger.name_to_value["train/skipped_updates"] == 3
        assert model._n_updates == updates
        touched = "world_model" if part == "world-model" else "actor"
        for before, after in zip(states[touched], getattr(model.policy, touched).state_dict().values(), strict=True):
            assert th.equal(before, after)
        with pytest.raises(RuntimeError, match=r"10 consecutive .* non-finite loss"), pytest.warns(RuntimeWarning):
            model.train(gradient_steps=20, batch_size=4)
    assert float(optimizer.state_dict()["state"][0]["step"]) == adam_step  # Adam's state untouched too
    model._consecutive_skips = 0
    model.train(gradient_steps=1, batch_size=4)  # finite again: training goes on, the count is kept
    assert model._n_updates == updates + 1 and model._skipped_updates == 10
    assert all(th.isfinite(p).all() for p in model.policy.parameters())
    buffer = io.BytesIO()
    model.save(buffer)
    buffer.seek(0)
    loaded = algo.load(buffer)
    assert loaded._skipped_updates == 10 and loaded._consecutive_skips == 0  # the count is saved


# -- memory --------------------------------------------------------------------------------------


def _resident_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_memory_is_flat_once_the_buffer_is_full(algo):
    """Short soak (benchmarks/soak.py is the long one): after the buffer has wrapped around, more
    training adds no Python objects and almost no resident memory."""
    model = _make(algo, learning_starts=40, buffer_size=150)
    model.learn(400)  # the buffer (150 rows) has wrapped twice
    assert model.replay_buffer.full
    gc.collect()
    objects, resident = len(gc.get_objects()), _resident_bytes()
    model.learn(400, reset_num_timesteps=False)
    gc.collect()
    added = len(gc.get_objects()) - objects
    assert added < 200  # keeping one latent per step adds 2000 (checked by hand)
    assert _resident_bytes() - resident < 8 * 2**20


def test_buffer_bytes_per_step_are_the_observation_floor():
    """MinAtar's bool cells take one byte each; the rest of a row is a few scalars."""
    from sb3_dreamer import SequenceReplayBuffer

    env = gym.make("MinAtar/Breakout-v1")
    buffer = SequenceReplayBuffer(1000, env.observation_space, env.action_space, n_envs=1)
    observation = sum(array.nbytes for array in buffer.observations.values()) / buffer.buffer_size
    total = sum(array.nbytes for array in vars(buffer).values() if isinstance(array, np.ndarray))
    total += sum(array.nbytes for array in buffer.observations.values())
    assert observation == int(np.prod(env.observation_space.shape)) == 400
    assert total / buffer.buffer_size <= observation + 16
