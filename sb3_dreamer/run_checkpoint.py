"""Checkpoints of a ``compare`` run in progress, so an interrupted run continues exactly where it stopped.

One file per run (``<out>/checkpoints/<run>.ckpt``, written to a temporary file and renamed over the
previous one) holds everything the rest of the run depends on:

- the model (``model.save``: networks, optimizers, counters, the last observation, and for the
  Dreamers their recurrent acting state and random states) and its replay buffer;
- the training and evaluation ``VecEnv`` objects themselves, pickled: MinAtar's game state, its
  sticky-action generator and the wrappers' counters are plain Python and numpy, so the envs
  continue mid-episode instead of being reset (``load`` alone resets the env it is given);
- the random states of torch, numpy, Python and the model's action space (SB3's ``DQN`` saves none);
- the evaluation rows so far and the evaluation callback's counters.

Checkpoints are taken at the start of a rollout (every transition stored, the previous update done),
the first one after each evaluation. A checkpoint written by another sb3-dreamer version or with other
algorithm arguments is not resumed: the run starts over (exact resumption is promised within a version).
"""

from __future__ import annotations

import io
import os
import pickle
import random
from typing import Any

import cloudpickle
import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv

#: Format of the checkpoint file; bumped when its layout changes.
FORMAT = 1


class _KeepOpen(io.BytesIO):
    """A bytes buffer that survives SB3 closing the file it writes into."""

    def close(self) -> None:
        pass


def random_state(model: BaseAlgorithm) -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": th.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "action_space": model.action_space.np_random.bit_generator.state,
    }
    if th.cuda.is_available() and model.device.type == "cuda":
        state["cuda"] = th.cuda.get_rng_state(model.device)
    return state


def restore_random_state(model: BaseAlgorithm, state: dict[str, Any]) -> None:
    th.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    model.action_space.np_random.bit_generator.state = state["action_space"]
    if "cuda" in state and model.device.type == "cuda":
        th.cuda.set_rng_state(state["cuda"], model.device)


def save_checkpoint(
    path: str, model: BaseAlgorithm, env: VecEnv, eval_env: VecEnv, progress: dict[str, Any], identity: dict
) -> None:
    """Write the checkpoint of a run atomically. ``identity`` (version, algorithm arguments,
    protocol) must equal the resuming run's for the checkpoint to be used."""
    model_file = _KeepOpen()
    model.save(model_file)
    buffer_file = _KeepOpen()
    if isinstance(model, OffPolicyAlgorithm):
        model.save_replay_buffer(buffer_file)
    record = {
        "format": FORMAT,
        "identity": identity,
        "model": model_file.getvalue(),
        "replay_buffer": buffer_file.getvalue() if isinstance(model, OffPolicyAlgorithm) else None,
        "envs": cloudpickle.dumps((env, eval_env)),
        "random": random_state(model),
        "progress": progress,
    }
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as file:
        pickle.dump(record, file, protocol=pickle.HIGHEST_PROTOCOL)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


def read_checkpoint(path: str, identity: dict) -> dict[str, Any] | None:
    """The checkpoint's record, or ``None`` when there is none or it belongs to another run
    configuration (then the reason is printed and the run starts over)."""
    if not os.path.exists(path):
        return None
    try:
        with open(path, "rb") as file:
            record = pickle.load(file)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as error:
        print(f"{path}: unreadable checkpoint ({type(error).__name__}: {error}); starting the run over", flush=True)
        return None
    if record.get("format") != FORMAT or record.get("identity") != identity:
        print(f"{path}: checkpoint of another version or configuration; starting the run over", flush=True)
        return None
    return record


def restore(
    record: dict[str, Any], cls: type[BaseAlgorithm], device: str
) -> tuple[BaseAlgorithm, VecEnv, VecEnv, dict[str, Any]]:
    """``(model, env, eval_env, progress)`` as they were when the checkpoint was written; call
    ``model.learn(remaining, reset_num_timesteps=False)`` to continue."""
    env, eval_env = pickle.loads(record["envs"])
    model = cls.load(io.BytesIO(record["model"]), env=env, device=device, force_reset=False)
    if record["replay_buffer"] is not None:
        model.load_replay_buffer(io.BytesIO(record["replay_buffer"]))  # type: ignore[attr-defined]
    restore_random_state(model, record["random"])
    return model, env, eval_env, record["progress"]
