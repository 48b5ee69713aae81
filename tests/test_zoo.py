"""rl-zoo3's own train / enjoy / -optimize run our algorithms (python -m sb3_dreamer.zoo)."""

import os

import pytest
import yaml

from sb3_dreamer.zoo import ALGORITHMS, HYPERPARAMS, main, register, with_default_config

TINY = (
    "policy_kwargs:dict(deter_size=16, hidden_size=16, stoch_size=4, classes=4, mlp_units=16, mlp_layers=1, "
    "cnn_depth=4)"
)
FAST = ["learning_starts:40", "batch_size:4", "sequence_length:8", "imagination_horizon:3", TINY]
ENV = "MinAtar/Breakout-v1"


def test_registered_in_rl_zoo3():
    register()
    from rl_zoo3 import hyperparams_opt, utils

    import sb3_dreamer

    for name, cls in ALGORITHMS.items():
        assert utils.ALGOS[name] is getattr(sb3_dreamer, cls)
        assert name in hyperparams_opt.HYPERPARAMS_SAMPLER


def test_shipped_hyperparameters_construct_for_every_entry():
    import sb3_dreamer
    from sb3_dreamer.envs import register_envs

    register_envs()
    for name, cls in ALGORITHMS.items():
        with open(HYPERPARAMS / f"{name}.yml") as file:
            table = yaml.safe_load(file)
        assert any(key.startswith("MinAtar/") for key in table), name
        for env_id, params in table.items():
            if env_id == "atari":
                continue
            kwargs = {k: v for k, v in params.items() if k not in ("n_timesteps", "env_wrapper", "n_envs")}
            if isinstance(kwargs.get("policy_kwargs"), str):
                kwargs["policy_kwargs"] = eval(kwargs["policy_kwargs"])
            getattr(sb3_dreamer, cls)(env=env_id, _init_setup_model=False, **kwargs)  # valid arguments


def test_default_config_is_added_only_for_our_algorithms():
    assert with_default_config(["--algo", "dreamerv2", "--env", ENV])[-2:] == [
        "--conf-file",
        str(HYPERPARAMS / "dreamerv2.yml"),
    ]
    assert with_default_config(["--algo", "ppo"]) == ["--algo", "ppo"]
    assert with_default_config(["--algo", "dreamerv3", "-conf", "mine.yml"]) == [
        "--algo",
        "dreamerv3",
        "-conf",
        "mine.yml",
    ]


def test_train_enjoy_and_optimize(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main(
        ["train", "--algo", "dreamerv2", "--env", ENV, "-n", "120", "-f", "logs", "--seed", "0", "--hyperparams", *FAST]
    )
    run = tmp_path / "logs" / "dreamerv2" / "MinAtar-Breakout-v1_1"
    assert (run / "MinAtar-Breakout-v1.zip").exists()
    with open(run / "MinAtar-Breakout-v1" / "config.yml") as file:
        assert "minatar-100k" in file.read()  # the shipped hyperparameters were used, then overridden
    main(["enjoy", "--algo", "dreamerv2", "--env", ENV, "-f", "logs", "--no-render", "-n", "40", "--verbose", "1"])
    assert "Episode Reward" in capsys.readouterr().out
    argv = ["train", "--algo", "dreamerv2", "--env", ENV, "-n", "100", "-f", "opt", "-optimize", "--n-trials", "1"]
    argv += ["--n-jobs", "1", "--sampler", "random", "--pruner", "none", "--n-evaluations", "1", "--eval-episodes", "1"]
    main([*argv, "--hyperparams", *FAST])
    assert "Number of finished trials:  1" in capsys.readouterr().out


def test_usage_error():
    with pytest.raises(SystemExit, match="usage"):
        main(["plot"])
    assert os.path.isdir(HYPERPARAMS)
