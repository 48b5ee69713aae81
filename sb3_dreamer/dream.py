"""Dream videos: what a trained world model predicts, beside what really happened.

A few real frames are filtered through the posterior (the "context"); from the last posterior
state the prior then imagines open-loop under the *real* actions, and each imagined state is
decoded into a frame (DreamerV2 paper, Sec. 4 and its video predictions; DreamerV1 Figure 5).
The video shows, left to right, the real frame, the model's frame and where they differ; the
border is green while the model sees the frames and red while it dreams. The per-step error is
the decoder's negative log-likelihood of the real observation, the units of
``train/reconstruction_loss`` and ``train/open_loop_image_nll_k``.

    sb3-dreamer dream MODEL.zip --env MinAtar/Breakout-v1 --out dream.gif

:class:`DreamVideoCallback` logs the same video to TensorBoard (SB3's ``Video``) while training.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Video

from sb3_dreamer.common.observations import ObsPart
from sb3_dreamer.common.rssm import RSSMState


@dataclass
class Dream:
    """One dream. Frames are ``(T, H, W, 3)`` uint8; ``context`` of them were seen by the model."""

    true: np.ndarray
    predicted: np.ndarray
    context: int
    errors: np.ndarray  # (T,) decoder NLL of the real observation: posterior for t < context, prior after
    rewards: np.ndarray  # (T,) real r_t (the reward for entering x_t)
    predicted_rewards: np.ndarray  # (T,)

    def video(self, scale: int = 8) -> np.ndarray:
        """``(T, H', W', 3)`` uint8: real | predicted | difference, each ``scale`` times enlarged."""
        diff = np.abs(self.true.astype(np.int16) - self.predicted.astype(np.int16)).astype(np.uint8)
        frames = []
        for t in range(len(self.true)):
            colour = (0, 200, 0) if t < self.context else (220, 0, 0)
            tiles = [
                _border(np.kron(x[t], np.ones((scale, scale, 1), np.uint8)), colour)
                for x in (self.true, self.predicted, diff)
            ]
            frames.append(np.concatenate(tiles, 1))
        return np.stack(frames)


def _border(image: np.ndarray, colour: tuple[int, int, int], width: int = 2) -> np.ndarray:
    out = np.empty((image.shape[0] + 2 * width, image.shape[1] + 2 * width, 3), np.uint8)
    out[:] = colour
    out[width:-width, width:-width] = image
    return out


def minatar_palette(channels: int) -> np.ndarray:
    """MinAtar's own colours (its ``rgb_array`` render): black, then seaborn's "cubehelix" palette
    of ``channels`` colours, which samples matplotlib's cubehelix map inside (0, 1)."""
    from matplotlib import colormaps

    colours = colormaps["cubehelix"](np.linspace(0.0, 1.0, channels + 2)[1:-1])[:, :3]
    return np.concatenate([np.zeros((1, 3)), colours]).astype(np.float64)


def render(part: ObsPart, x: np.ndarray) -> np.ndarray:
    """Network-space images ``(T, C, H, W)`` -> ``(T, H, W, 3)`` uint8.

    Binary planes (MinAtar) take MinAtar's colours, each cell the colour of its highest set plane
    (predicted planes: those with probability above 1/2); uint8 images undo the [-0.5, 0.5]
    scaling; float images are scaled by the real frames' range by the caller.
    """
    if part.dtype == "bool":
        channels = x.shape[1]
        index = np.max((x > 0.5) * np.arange(1, channels + 1).reshape(1, -1, 1, 1), axis=1)
        return (minatar_palette(channels)[index] * 255).round().astype(np.uint8)
    if part.dtype == "uint8":
        x = (x + 0.5) * 255.0
    image = np.clip(x, 0, 255).round().astype(np.uint8)
    if image.shape[1] == 1:
        image = np.repeat(image, 3, axis=1)
    return np.moveaxis(image[:, :3], 1, -1)


def image_part(model: Any, key: str | None = None) -> ObsPart:
    """The image entry a dream shows (``key``, or the first image entry); a clear error otherwise."""
    wm = model.policy.world_model
    if getattr(model, "loss_scales", {}).get("reconstruction", 0.0) == 0.0 or wm.decoder is None:
        raise ValueError(
            f"{type(model).__name__} was trained without its decoder (reconstruction scale 0): no frames to dream."
        )
    images = [p for p in wm.encoder.parts if p.is_image]
    if not images:
        raise ValueError(f"dream needs an image observation; this model sees only vectors ({model.observation_space}).")
    if key is None:
        return images[0]
    for part in images:
        if part.key == key:
            return part
    raise ValueError(f"No image entry {key!r}; the model's image entries are {[p.key for p in images]}.")


@th.no_grad()
def dream(
    model: Any, env: gym.Env, context: int = 5, horizon: int = 15, seed: int = 0, key: str | None = None
) -> Dream:
    """Play ``context + horizon`` steps of ``env`` with the model's (sampled) actor, then show what the
    world model predicts for them: posterior reconstructions of the first ``context`` frames and the
    prior's open-loop predictions (latent modes, real actions) for the rest. The global random state is
    left as it was, so a dream during training changes nothing in it. An episode that ends early
    gives a shorter dream."""
    if context < 1 or horizon < 0:
        raise ValueError(f"context must be >= 1 and horizon >= 0, got {context} and {horizon}.")
    if env.observation_space != model.observation_space or env.action_space != model.action_space:
        raise ValueError(
            f"The env does not match the model: observations {env.observation_space} vs {model.observation_space}, "
            f"actions {env.action_space} vs {model.action_space}."
        )
    part = image_part(model, key)
    policy = model.policy
    policy.set_training_mode(False)
    with th.random.fork_rng(devices=[]):
        th.manual_seed(seed)
        observations, actions, rewards = _play(model, env, context + horizon, seed)
        length = len(observations)
        obs = {
            k: th.as_tensor(np.stack([o[k] for o in observations])[None], device=policy.device) for k in observations[0]
        }
        taken = policy.action_to_tensor(policy.to_buffer_action(actions)).float()  # a_0.., the actor's format
        prev = th.cat([th.zeros_like(taken[:1]), taken[: length - 1]], 0)[None]  # a_{t-1}, zeros before x_0
        wm = policy.world_model
        inputs = wm.preprocess(obs, 2)
        is_first = th.zeros(1, length, device=policy.device)
        is_first[0, 0] = 1.0
        seen = min(context, length)
        post, _ = wm.rssm.observe(
            wm.encoder({k: v[:, :seen] for k, v in inputs.items()}), prev[:, :seen], is_first[:, :seen]
        )
        feats = [post.feat[0]]
        state = RSSMState(*(x[:, seen - 1] for x in post))
        for t in range(seen, length):
            state = wm.rssm.img_step(state, prev[:, t], sample=False)
            feats.append(state.feat)
        feat = th.cat(feats, 0)  # (T, F)
        targets = {k: v[0] for k, v in inputs.items()}
        errors = wm.decoder.nll(feat, targets).cpu().numpy()
        params = wm.decoder(feat)[part.key].float()
        predicted = th.sigmoid(params) if part.dtype == "bool" else params
        reward_pred = wm.reward(feat).float().cpu().numpy()
    true_x, pred_x = targets[part.key].cpu().numpy(), predicted.cpu().numpy()
    if part.dtype == "float":  # show float images in the real frames' range
        low, high = float(true_x.min()), float(true_x.max())
        true_x, pred_x = [(x - low) / max(high - low, 1e-8) * 255.0 for x in (true_x, pred_x)]
    return Dream(render(part, true_x), render(part, pred_x), seen, errors, np.asarray(rewards), reward_pred)


def _play(
    model: Any, env: gym.Env, steps: int, seed: int
) -> tuple[list[dict[str, np.ndarray]], np.ndarray, list[float]]:
    """Observations x_0.., actions a_0.. and rewards r_0.. (r_0 = 0) of one episode's first ``steps`` steps."""
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    as_dict = (lambda o: dict(o)) if isinstance(obs, dict) else (lambda o: {"obs": o})
    observations, actions, rewards = [as_dict(obs)], [], [0.0]
    state, start = None, np.ones(1, bool)
    for _ in range(steps - 1):
        batched = {k: v[None] for k, v in obs.items()} if isinstance(obs, dict) else obs[None]
        action, state = model.predict(batched, state=state, episode_start=start, deterministic=False)
        start = np.zeros(1, bool)
        actions.append(action[0])
        obs, reward, terminated, truncated, _ = env.step(action[0])
        if terminated or truncated:
            break
        observations.append(as_dict(obs))
        rewards.append(float(reward))
    actions.append(actions[-1] if actions else env.action_space.sample())  # the action after the last frame: unused
    return observations, np.asarray(actions), rewards


def save_dream(result: Dream, path: str, fps: int = 4, scale: int = 8) -> None:
    """Write the video (``.gif`` or ``.mp4``, through ``imageio``) and, beside it, ``<path>.errors.png``
    with the per-step error, the context shaded."""
    import imageio.v3 as iio

    frames = result.video(scale)
    if path.endswith(".mp4"):
        iio.imwrite(path, frames, fps=fps, codec="libx264", macro_block_size=1)
    else:
        iio.imwrite(path, frames, duration=1000 / fps, loop=0)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.axvspan(-0.5, result.context - 0.5, color="green", alpha=0.15, label="context (posterior)")
    ax.plot(result.errors, marker="o", color="black", label="decoder NLL of the real frame")
    ax.set_xlabel("step")
    ax.set_ylabel("NLL")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path.rsplit(".", 1)[0] + ".errors.png", dpi=100)
    plt.close(fig)


def saved_algorithm(path: str) -> type:
    """The sb3-dreamer class that saved the zip at ``path`` (a clear error for anything else)."""
    import sb3_dreamer

    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data").decode())
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a model saved by sb3-dreamer: {error}") from error
    name = data.get("_sb3_dreamer_algorithm")
    cls = getattr(sb3_dreamer, str(name), None)
    if name is None or not isinstance(cls, type):
        raise ValueError(
            f"{path} was saved by another algorithm or package, not by sb3-dreamer: it has no world model."
        )
    return cls


class DreamVideoCallback(BaseCallback):
    """Every ``dream_freq`` env steps, log a dream on ``env`` as ``dream/video`` (SB3's ``Video``,
    shown by TensorBoard) and its mean open-loop error as ``dream/open_loop_nll``. Dreaming does
    not touch the training's random state or envs."""

    def __init__(
        self, env: gym.Env, dream_freq: int = 10_000, context: int = 5, horizon: int = 15, fps: int = 4
    ) -> None:
        super().__init__()
        self.env, self.dream_freq, self.context, self.horizon, self.fps = env, dream_freq, context, horizon, fps
        self._next = dream_freq

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next += self.dream_freq
            result = dream(self.model, self.env, self.context, self.horizon, seed=self.num_timesteps)
            frames = th.as_tensor(result.video(4)).permute(0, 3, 1, 2)[None]  # (1, T, 3, H, W)
            self.logger.record("dream/video", Video(frames, fps=self.fps), exclude=("stdout", "log", "json", "csv"))
            dreamed = result.errors[result.context :]
            self.logger.record("dream/open_loop_nll", float(dreamed.mean()) if len(dreamed) else float("nan"))
            self.model.policy.set_training_mode(False)
        return True


__all__ = ["Dream", "DreamVideoCallback", "dream", "minatar_palette", "render", "save_dream", "saved_algorithm"]
