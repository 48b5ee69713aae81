"""The stages of World Models' training (paper Sec. 3, "Procedure"): collect random rollouts,
train V on their frames, train M on their sequences of ``z``, evolve C with CMA-ES."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback

#: The algorithm whose stages these are (:class:`~sb3_dreamer.WorldModels`; not imported, to keep one direction)
WorldModels = Any


@dataclass
class Rollouts:
    """Rows ``t`` of real play: the observation x_t, the action a_t taken in it (controller format),
    the reward and termination of that step, and whether x_t starts an episode."""

    observations: dict[str, np.ndarray]
    actions: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    starts: np.ndarray
    episodes: int


def collect(model: WorldModels, steps: int, callback: BaseCallback, controller: bool | None) -> Rollouts:
    """``steps`` env steps of uniformly random actions (``controller`` None) into :class:`Rollouts`."""
    env, policy = model.env, model.policy
    assert env is not None and env.num_envs == 1, "World Models plays one env at a time"
    obs = env.reset()
    observations: list[Any] = []
    actions, rewards, terminals, starts = [], [], [], []
    start, length, episodes = True, 0, 0
    for _ in range(steps):
        action = np.array([env.action_space.sample()])
        observations.append({k: v[0] for k, v in obs.items()} if isinstance(obs, dict) else {"obs": obs[0]})
        next_obs, reward, done, infos = env.step(action)
        actions.append(policy.to_actor_action(action)[0].cpu().numpy())
        rewards.append(float(reward[0]))
        truncated = bool(infos[0].get("TimeLimit.truncated", False))
        terminals.append(float(done[0] and not truncated))
        starts.append(float(start))
        model.num_timesteps += 1
        model._update_info_buffer(infos, done)
        length += 1
        start = bool(done[0])
        if length >= model.max_episode_steps and not start:
            next_obs, start = env.reset(), True
        if start:
            episodes, length = episodes + 1, 0
        obs = next_obs
        callback.update_locals(locals())
        if not callback.on_step():
            break
    stacked = {k: np.stack([o[k] for o in observations]) for k in observations[0]}
    return Rollouts(stacked, np.stack(actions), np.array(rewards), np.array(terminals), np.array(starts), episodes)


def _batches(n: int, size: int, generator: np.random.Generator) -> list[np.ndarray]:
    order = generator.permutation(n)
    return [order[i : i + size] for i in range(0, n, size)]


def train_vae(model: WorldModels, data: Rollouts) -> dict[str, float]:
    """V: ``vae_epochs`` passes over the frames (paper Sec. 2.1)."""
    policy, rng = model.policy, np.random.default_rng(model.seed)
    policy.set_training_mode(True)
    n, sums, count = len(data.rewards), {}, 0
    for _ in range(model.vae_epochs):
        for index in _batches(n, model.vae_batch_size, rng):
            inputs = policy.inputs({k: v[index] for k, v in data.observations.items()}, 1)
            loss, metrics = policy.vae.loss(inputs, model.kl_tolerance)
            policy.vae_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            policy.vae_optimizer.step()
            sums = {k: sums.get(k, 0.0) + float(v) for k, v in metrics.items()}
            count += 1
    return {k: v / max(count, 1) for k, v in sums.items()}


def _windows(starts: np.ndarray, length: int) -> list[np.ndarray]:
    """Row indices of consecutive windows of at most ``length`` rows inside each episode."""
    bounds = [*np.flatnonzero(starts).tolist(), len(starts)]
    if bounds[0] != 0:
        bounds.insert(0, 0)
    windows = []
    for begin, end in itertools.pairwise(bounds):
        windows += [np.arange(i, min(i + length, end)) for i in range(begin, end, length)]
    return [w for w in windows if len(w) > 0]


def train_rnn(model: WorldModels, data: Rollouts) -> dict[str, float]:
    """M: ``rnn_epochs`` passes over windows of ``(z_t, a_t) -> (z_{t+1}, r_t, done_t)`` (paper Sec. 2.2),
    ``z`` drawn from V for each frame as in the paper; then the first frames' means become the dream starts."""
    policy, rng, device = model.policy, np.random.default_rng(model.seed), model.device
    policy.set_training_mode(True)
    with th.no_grad():
        mean, log_std = policy.vae.encode(policy.inputs(data.observations, 1))
        z = mean + log_std.exp() * th.randn_like(mean)
        policy.dream_starts = mean[th.as_tensor(data.starts > 0, device=device)].clone()
    n, length = len(data.rewards), model.rnn_sequence_length
    same_episode = np.append(data.starts[1:] == 0, False)  # x_{t+1} follows x_t in one episode
    actions = th.as_tensor(data.actions, dtype=th.float32, device=device)
    rewards = th.as_tensor(data.rewards, dtype=th.float32, device=device)
    terminals = th.as_tensor(data.terminals, dtype=th.float32, device=device)
    windows = _windows(data.starts, length)
    sums, count = {}, 0
    for _ in range(model.rnn_epochs):
        for chunk in _batches(len(windows), model.rnn_batch_size, rng):
            rows = np.zeros((len(chunk), length), np.int64)
            mask = np.zeros((len(chunk), length), np.float32)
            for i, w in enumerate(chunk):
                rows[i, : len(windows[w])], mask[i, : len(windows[w])] = windows[w], 1.0
            index = th.as_tensor(rows, device=device)
            step_mask = th.as_tensor(mask, device=device)
            next_mask = step_mask * th.as_tensor(same_episode[rows], dtype=th.float32, device=device)
            (log_pi, mu, sigma, reward, done), _, _ = policy.rnn(z[index], actions[index])
            z_nll = policy.rnn.nll(log_pi, mu, sigma, z[(index + 1).clamp(max=n - 1)])
            reward_loss = (reward - rewards[index]) ** 2
            done_loss = th.nn.functional.binary_cross_entropy_with_logits(done, terminals[index], reduction="none")
            steps = step_mask.sum().clamp(min=1.0)
            loss = (z_nll * next_mask).sum() / next_mask.sum().clamp(min=1.0)
            loss = loss + ((reward_loss + done_loss) * step_mask).sum() / steps
            policy.rnn_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            policy.rnn_optimizer.step()
            metrics = {
                "mdn_loss": loss.detach(),
                "mdn_z_nll": (z_nll.detach() * next_mask).sum() / next_mask.sum().clamp(min=1.0),
            }
            sums = {k: sums.get(k, 0.0) + float(v) for k, v in metrics.items()}
            count += 1
    return {k: v / max(count, 1) for k, v in sums.items()}


@th.no_grad()
def real_returns(model: WorldModels, episodes: int, callback: BaseCallback) -> list[float] | None:
    """Returns of ``episodes`` real episodes of the current controller (None if a callback stopped)."""
    env, policy = model.env, model.policy
    assert env is not None
    policy.set_training_mode(False)
    returns: list[float] = []
    obs, state = env.reset(), policy.rnn.initial(1, model.device)
    total, length = 0.0, 0
    while len(returns) < episodes:
        action, state = policy.step(policy.inputs(obs, 1), state)
        obs, reward, done, infos = env.step(policy.to_env_action(action))
        total, length = total + float(reward[0]), length + 1
        model.num_timesteps += 1
        model._update_info_buffer(infos, done)
        if done[0] or length >= model.max_episode_steps:
            returns.append(total)
            if not done[0]:
                obs = env.reset()
            state, total, length = policy.rnn.initial(1, model.device), 0.0, 0
        callback.update_locals(locals())
        if not callback.on_step():
            return None
    return returns


@th.no_grad()
def dream_return(model: WorldModels, episodes: int) -> float:
    """Mean return of ``episodes`` episodes in M's dream at ``temperature`` (paper Sec. 4.4), each from
    an encoded real first frame, ended by M's done head or ``dream_length`` steps."""
    policy, device = model.policy, model.device
    starts = policy.dream_starts
    z = starts[th.randint(len(starts), (episodes,), device=device)]
    state = policy.rnn.initial(episodes, device)
    total, alive = th.zeros(episodes, device=device), th.ones(episodes, device=device)
    for _ in range(model.dream_length):
        action = policy.controller(z, state[0][0])
        (log_pi, mu, log_std, reward, done), state, _ = policy.rnn(z[:, None], action[:, None], state)
        total += alive * reward[:, 0]
        alive = alive * (th.sigmoid(done[:, 0]) < 0.5)
        if not alive.any():
            break
        z = policy.rnn.sample(log_pi[:, 0], mu[:, 0], log_std[:, 0], model.temperature)
    return float(total.mean())


def evolve_generation(model: WorldModels, es: Any, callback: BaseCallback) -> dict[str, float] | None:
    """One CMA-ES generation over C's parameters; C becomes the search's mean afterwards."""
    controller = model.policy.controller
    solutions = es.ask()
    fitness = []
    for candidate in solutions:
        controller.load_vector(th.as_tensor(candidate))
        if model.controller_training == "dream":
            fitness.append(dream_return(model, model.rollouts_per_candidate))
        else:
            returns = real_returns(model, model.rollouts_per_candidate, callback)
            if returns is None:
                return None
            fitness.append(float(np.mean(returns)))
    values = np.array(fitness, dtype=np.float64)
    finite = np.isfinite(values)
    model.rejected_candidates += int((~finite).sum())
    worst = values[finite].min() - 1.0 if finite.any() else -1e9
    values[~finite] = worst  # ranked last: a non-finite fitness never moves the search
    es.tell(solutions, (-values).tolist())  # CMA-ES minimises
    controller.load_vector(th.as_tensor(es.result.xfavorite))
    metrics = {"fitness_best": float(values.max()), "fitness_mean": float(values.mean()), "cma_sigma": float(es.sigma)}
    if model.controller_training == "dream":  # the dream-trained controller, scored in the real env
        returns = real_returns(model, 1, callback)
        if returns is None:
            return None
        metrics["real_return"] = returns[0]
    return metrics
