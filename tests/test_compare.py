"""``sb3-dreamer compare``: files and columns, resume, protocol guard, statistics, the DQN preset
and the shared MinAtar wrapper."""

import csv
import dataclasses
import json
import math
import os
import shutil

import gymnasium as gym
import pytest
import torch
from stable_baselines3 import DQN

import sb3_dreamer
import sb3_dreamer.compare as compare_module
import sb3_dreamer.compare.run as run_module
from sb3_dreamer.cli import main
from sb3_dreamer.compare import (
    ALGORITHMS,
    CSV_COLUMNS,
    area_under_curve,
    compare,
    mean_interval,
    read_csv,
    run_name,
    t_quantile_975,
)
from sb3_dreamer.envs import make_env
from sb3_dreamer.presets import MinAtarCNN, minatar_dqn_kwargs, minatar_dqn_parameter_count, minatar_dqn_schedule

ENV = "MinAtar/Breakout-v1"
TINY_RUN = dict(steps=300, seeds=2, eval_freq=150, eval_episodes=2, dreamer_size="tiny", threads=1)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """Two algorithms, one game, two seeds, 300 steps, through the command line."""
    out = str(tmp_path_factory.mktemp("compare"))
    argv = ["compare", "--env", ENV, "--algo", "dreamerv2", "dqn", "--steps", "300", "--seeds", "2"]
    argv += ["--eval-freq", "150", "--eval-episodes", "2", "--dreamer-size", "tiny", "--threads", "1"]
    argv += ["--device", "cpu", "--out", out]
    main(argv)
    return out, argv


def test_every_file_with_its_columns(finished):
    out, argv = finished
    for algo in ("dreamerv2", "dqn"):
        for seed in (0, 1):
            path = os.path.join(out, "runs", f"{run_name(ENV, algo, seed)}.csv")
            with open(path, newline="") as file:
                reader = csv.DictReader(file)
                assert tuple(reader.fieldnames) == CSV_COLUMNS
                rows = list(reader)
            assert [int(r["env_step"]) for r in rows] == [0, 150, 300]
            assert {r["env"] for r in rows} == {ENV} and {r["algo"] for r in rows} == {algo}
            assert {int(r["seed"]) for r in rows} == {seed}
            assert all(int(r["eval_episodes"]) == 2 for r in rows)
            walls = [float(r["wall_seconds"]) for r in rows]
            assert walls == sorted(walls) and walls[-1] > 0
            assert int(rows[-1]["train_episodes"]) > 0  # Breakout episodes are short: some finished
    assert not [f for f in os.listdir(os.path.join(out, "runs")) if "partial" in f or f.endswith(".tmp")]

    summary = open(os.path.join(out, "summary.md")).read()
    for algo in ("dreamerv2", "dqn"):
        finals = [read_csv(os.path.join(out, "runs", f"{run_name(ENV, algo, s)}.csv"))[-1] for s in (0, 1)]
        final_mean = sum(row["eval_return_mean"] for row in finals) / 2
        row = next(line for line in summary.splitlines() if line.startswith(f"| {ENV} | {algo} | 2 |"))
        assert f"| {final_mean:.2f} [" in row or (finals[0] == finals[1] and f"| {final_mean:.2f} |" in row)
    assert "(vs dqn)" in next(line for line in summary.splitlines() if "| dreamerv2 |" in line)

    with open(os.path.join(out, "curves.png"), "rb") as file:
        assert file.read(8) == b"\x89PNG\r\n\x1a\n"

    meta = json.load(open(os.path.join(out, "meta.json")))
    assert meta["command"] == "sb3-dreamer " + " ".join(argv)
    assert meta["versions"]["torch"] == torch.__version__
    assert meta["versions"]["sb3-dreamer"] == sb3_dreamer.__version__  # from the source, not stale metadata
    assert meta["torch_device"] == "cpu" and meta["cpu"] and "date" in meta
    assert meta["protocol"]["steps"] == 300 and meta["protocol"]["eval_episodes"] == 2
    assert set(meta["runs"]) == {run_name(ENV, a, s) for a in ("dreamerv2", "dqn") for s in (0, 1)}
    assert meta["algorithms"]["dqn"]["kwargs"]["learning_starts"] == 15  # 5% of the 300-step budget


def test_resume_skips_finished_runs(finished, monkeypatch, tmp_path):
    out, _ = finished
    # an interrupted run leaves only a partial file: the rerun redoes exactly that run
    lost = run_name(ENV, "dqn", 1)
    os.replace(os.path.join(out, "runs", f"{lost}.csv"), os.path.join(out, "runs", f"{lost}.partial.csv"))
    calls = []
    real_run_one = compare_module.run_one

    def counting_run_one(**job):
        calls.append((job["env_id"], job["algo"], job["seed"]))
        return real_run_one(**job)

    monkeypatch.setattr(run_module, "run_one", counting_run_one)  # what _run_job calls
    records = compare([ENV], ["dreamerv2", "dqn"], out=out, **TINY_RUN)
    assert calls == [(ENV, "dqn", 1)]
    assert [(r["algo"], r["seeds"]) for r in records] == [("dreamerv2", [0, 1]), ("dqn", [0, 1])]
    compare([ENV], ["dreamerv2", "dqn"], out=out, **TINY_RUN)
    assert calls == [(ENV, "dqn", 1)]  # nothing left to do
    assert len(json.load(open(os.path.join(out, "meta.json")))["commands"]) == 3


def test_a_different_protocol_in_the_same_folder_is_an_error(finished):
    out, _ = finished
    with pytest.raises(ValueError, match="steps: 300 there, 600 now"):
        compare([ENV], ["dqn"], out=out, **{**TINY_RUN, "steps": 600})


def test_changed_algorithm_arguments_in_the_same_folder_are_an_error(finished, monkeypatch):
    out, _ = finished
    changed = dataclasses.replace(ALGORITHMS["dqn"], kwargs=lambda steps, size: {"learning_rate": 1e-3})
    monkeypatch.setitem(ALGORITHMS, "dqn", changed)
    with pytest.raises(ValueError, match="made with other arguments"):
        compare([ENV], ["dqn"], out=out, **TINY_RUN)


def test_runs_without_meta_are_an_error(finished, tmp_path):
    out, _ = finished
    shutil.copytree(os.path.join(out, "runs"), os.path.join(tmp_path, "runs"))
    with pytest.raises(ValueError, match=r"meta\.json is missing"):
        compare([ENV], ["dqn"], out=str(tmp_path), **TINY_RUN)


def test_runs_stop_exactly_at_the_budget_in_parallel_processes(tmp_path):
    # SB3's default DQN collects 4 steps per train call: 302 steps would end at 304 without the stop
    records = compare([ENV], ["dqn-sb3"], out=str(tmp_path), **{**TINY_RUN, "steps": 302, "jobs": 2})
    assert records[0]["seeds"] == [0, 1] and records[0]["steps"] == 302
    for seed in (0, 1):
        rows = read_csv(os.path.join(tmp_path, "runs", f"{run_name(ENV, 'dqn-sb3', seed)}.csv"))
        assert [int(r["env_step"]) for r in rows] == [0, 150, 300, 302]


def test_unknown_algorithm_env_or_size_fail_before_running(tmp_path):
    with pytest.raises(ValueError, match="Unknown algorithm"):
        compare([ENV], ["dreamerv9"], out=str(tmp_path), **TINY_RUN)
    with pytest.raises(ValueError, match="Unknown environment"):
        compare(["MinAtar/Nope-v1"], ["dqn"], out=str(tmp_path), **TINY_RUN)
    with pytest.raises(ValueError, match="Unknown DreamerV2 size"):
        compare([ENV], ["dreamerv2"], out=str(tmp_path), **{**TINY_RUN, "dreamer_size": "huge"})
    with pytest.raises(ValueError, match="eval_episodes must be positive"):
        compare([ENV], ["dqn"], out=str(tmp_path), **{**TINY_RUN, "eval_episodes": 0})
    assert not os.path.exists(os.path.join(tmp_path, "runs"))


def test_statistics_against_hand_computed_values():
    assert t_quantile_975(2) == 4.303
    assert t_quantile_975(30) == pytest.approx(2.042, abs=0.003)
    assert [t_quantile_975(df) for df in (6, 7, 8, 9, 10)] == [2.447, 2.365, 2.306, 2.262, 2.228]
    assert [t_quantile_975(df) for df in (31, 40, 60)] == pytest.approx([2.0395, 2.0211, 2.0003], abs=0.001)
    mean, low, high = mean_interval([1.0, 2.0, 3.0])  # std 1, n 3
    half = 4.303 / math.sqrt(3)
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    assert mean_interval([5.0])[0] == 5.0 and math.isnan(mean_interval([5.0])[1])
    assert area_under_curve([0, 10, 20], [0.0, 1.0, 1.0]) == pytest.approx(0.75)  # (5 + 10) / 20


# --------------------------------------------------------------------------------------------- DQN preset


def test_dqn_preset_network_matches_the_paper():
    env = make_env(ENV)  # Breakout-v1: 10x10x4 planes, 3 actions
    model = DQN("MlpPolicy", env, **minatar_dqn_kwargs(5_000_000), device="cpu")
    q_net = model.q_net
    assert isinstance(q_net.features_extractor, MinAtarCNN)
    conv, linear, out = q_net.features_extractor.conv, q_net.features_extractor.linear, q_net.q_net[0]
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride) == (4, 16, (3, 3), (1, 1))
    assert (linear.in_features, linear.out_features) == (16 * 8 * 8, 128)
    assert (out.in_features, out.out_features) == (128, 3)
    # conv 16*(9*4+1) = 592, hidden 128*(1024+1) = 131200, output 3*(128+1) = 387
    assert sum(p.numel() for p in q_net.parameters()) == 132_179
    assert minatar_dqn_parameter_count(channels=4, n_actions=3) == 132_179
    for game, channels in (("Asterix", 4), ("Freeway", 7), ("Seaquest", 10), ("SpaceInvaders", 6)):
        game_env = make_env(f"MinAtar/{game}-v1")
        game_model = DQN("MlpPolicy", game_env, **minatar_dqn_kwargs(), device="cpu")
        n_actions = int(game_env.action_space.n)
        expected = minatar_dqn_parameter_count(channels, n_actions)
        assert sum(p.numel() for p in game_model.q_net.parameters()) == expected
    optimizer = model.policy.optimizer
    assert isinstance(optimizer, torch.optim.RMSprop)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["alpha"], group["eps"], group["centered"]) == (2.5e-4, 0.95, 0.01, True)
    assert (model.batch_size, model.buffer_size, model.target_update_interval, model.gamma) == (32, 100_000, 1000, 0.99)


def test_dqn_preset_schedule_maps_onto_the_budget():
    assert minatar_dqn_schedule(5_000_000) == (5_000, 100_000)
    assert minatar_dqn_schedule(1_000_000) == (5_000, 100_000)
    assert minatar_dqn_schedule(100_000) == (5_000, 10_000)
    assert minatar_dqn_schedule(50_000) == (2_500, 5_000)
    for budget in (5_000_000, 100_000):
        kwargs = minatar_dqn_kwargs(budget)
        model = DQN("MlpPolicy", make_env(ENV), **kwargs, device="cpu")
        starts, decay = minatar_dqn_schedule(budget)
        # the paper's schedule: 1.0 when learning starts, linear to 0.1 over ``decay`` steps, then 0.1
        steps = [starts, starts + decay / 2, starts + decay, budget]
        epsilons = [model.exploration_schedule(1 - step / budget) for step in steps]
        assert epsilons == pytest.approx([1.0, 0.55, 0.1, 0.1])


# --------------------------------------------------------------------------------------------- shared wrapper


def _run_episode(env: gym.Env) -> tuple[int, bool, bool]:
    env.reset(seed=0)
    env.action_space.seed(0)
    steps = 0
    while True:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        if terminated or truncated:
            return steps, terminated, truncated


def test_freeway_timer_is_a_truncation_and_real_ends_stay_terminal():
    assert _run_episode(gym.make("MinAtar/Freeway-v1")) == (2501, True, False)  # MinAtar's own report
    assert _run_episode(make_env("MinAtar/Freeway-v1")) == (2501, False, True)
    steps, terminated, truncated = _run_episode(make_env(ENV))  # Breakout: the ball is lost
    assert terminated and not truncated and steps < 2500


def test_envs_without_a_time_limit_are_capped_for_every_algorithm():
    # a greedy policy can live forever in MinAtar (Seaquest: stay at the surface); evaluations must end
    capped = run_module._make_capped_env("MinAtar/Seaquest-v1")
    assert isinstance(capped, gym.wrappers.TimeLimit) and capped._max_episode_steps == compare_module.MAX_EPISODE_STEPS
    capped.reset(seed=0)
    steps, truncated = 0, False
    while not truncated:
        _, _, terminated, truncated, _ = capped.step(0)  # no-op: never dives
        assert not terminated
        steps += 1
    assert steps == compare_module.MAX_EPISODE_STEPS
    cartpole = run_module._make_capped_env("CartPole-v1")  # keeps its own 500-step limit
    assert cartpole.spec.max_episode_steps == 500
    assert not isinstance(cartpole, gym.wrappers.TimeLimit) or cartpole._max_episode_steps == 500


def test_dreamerv3_in_compare(finished, tmp_path):
    """``--algo dreamerv3`` at a named size joins an existing comparison folder (its size is an
    algorithm argument, not part of the protocol) and gets its own rows and ratio."""
    out = str(tmp_path / "with_v3")
    shutil.copytree(finished[0], out)
    argv = ["compare", "--env", ENV, "--algo", "dreamerv3", "--steps", "300", "--seed-list", "0"]
    argv += ["--eval-freq", "150", "--eval-episodes", "2", "--dreamer-size", "tiny", "--dreamerv3-size", "XXS"]
    argv += ["--threads", "1", "--device", "cpu", "--out", out]
    main(argv)
    rows = read_csv(os.path.join(out, "runs", f"{run_name(ENV, 'dreamerv3', 0)}.csv"))
    assert [r["env_step"] for r in rows] == [0, 150, 300]
    meta = json.load(open(os.path.join(out, "meta.json")))
    assert meta["algorithms"]["dreamerv3"]["kwargs"] == {"model_size": "XXS", "learning_starts": 15}
    summary = open(os.path.join(out, "summary.md")).read()
    assert "DreamerV3 size or preset: `XXS`" in summary
    assert "(vs dqn)" in next(line for line in summary.splitlines() if "| dreamerv3 |" in line)
    with pytest.raises(ValueError, match="Unknown DreamerV3 size"):
        compare([ENV], ["dreamerv3"], steps=300, seeds=1, out=str(tmp_path / "x"), dreamerv3_size="huge")


def test_every_named_configuration_of_every_world_model_algorithm_is_one_shape():
    """``--dreamer-size``/``--dreamerv3-size`` names come from one mapping per algorithm
    (name -> constructor arguments), and every entry is arguments the class takes."""
    import importlib
    import inspect

    from sb3_dreamer.compare.registry import ALGORITHMS, SIZE_MODULES, algorithm_kwargs

    for algo, module in SIZE_MODULES.items():
        sizes = importlib.import_module(module)
        accepted = inspect.signature(ALGORITHMS[algo].make_class().__init__).parameters
        assert sizes.DEFAULT_CONFIGURATION in sizes.CONFIGURATIONS and set(sizes.PRESETS) <= set(sizes.CONFIGURATIONS)
        for name, arguments in sizes.CONFIGURATIONS.items():
            assert set(arguments) <= set(accepted), (algo, name)
            kwargs = algorithm_kwargs(algo, 100_000, {algo: name})
            assert kwargs == {**arguments, "learning_starts": 5_000}, (algo, name)
            if "policy_kwargs" in arguments:  # a copy: a run cannot change the registry
                assert kwargs["policy_kwargs"] is not arguments["policy_kwargs"]


def test_action_repeat_wraps_training_and_evaluation_and_is_in_the_protocol(tmp_path):
    env = run_module._make_capped_env("CartPole-v1", action_repeat=3)
    env.reset(seed=0)
    total, steps = 0.0, 0
    done = False
    while not done:  # CartPole pays 1 per frame: each action earns the 3 frames it was repeated for
        _, reward, terminated, truncated, _ = env.step(0)
        done = terminated or truncated
        total, steps = total + reward, steps + 1
        assert reward == 3.0 or done
    assert steps < total  # fewer decisions than frames
    out = str(tmp_path / "repeat")
    argv = ["compare", "--env", ENV, "--algo", "dqn-sb3", "--steps", "100", "--seeds", "1", "--eval-freq", "100"]
    main([*argv, "--eval-episodes", "1", "--threads", "1", "--action-repeat", "2", "--out", out])
    with open(os.path.join(out, "meta.json")) as file:
        assert json.load(file)["protocol"]["action_repeat"] == 2
    with open(os.path.join(out, "summary.md")) as file:
        assert "Action repeat: 2" in file.read()
    with pytest.raises(ValueError, match="action_repeat must be positive"):
        compare([ENV], ["dqn-sb3"], out=str(tmp_path / "bad"), **{**TINY_RUN, "action_repeat": 0})


def test_world_models_in_compare(tmp_path):
    variant = (
        "worldmodels(random_steps=200, vae_epochs=1, rnn_epochs=1, population_size=4, rollouts_per_candidate=1, "
        "max_episode_steps=50, policy_kwargs={'z_size': 4, 'hidden_size': 8, 'mixtures': 2, 'cnn_depth': 4})"
    )
    records = compare([ENV], [variant], out=str(tmp_path), **{**TINY_RUN, "seeds": 1, "steps": 400, "eval_freq": 200})
    rows = read_csv(os.path.join(str(tmp_path), "runs", f"{run_name(ENV, variant, 0)}.csv"))
    assert [int(r["env_step"]) for r in rows] == [0, 200, 400]  # stops exactly at the budget
    assert records and math.isnan(float(rows[-1]["eval_sampled_return_mean"]))  # a deterministic controller
