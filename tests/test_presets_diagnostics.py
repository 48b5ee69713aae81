"""The MinAtar-100k work: presets, ``compare`` variants, sampled evaluation, diagnostics, and
checkpointed ``compare`` runs that continue exactly where they were interrupted."""

import math
import os

import numpy as np
import pytest
import torch
from conftest import FAST, TINY

import sb3_dreamer.compare as compare_module
from sb3_dreamer import DreamerV2, DreamerV3
from sb3_dreamer.common.diagnostics import head_errors, open_loop_errors
from sb3_dreamer.compare import (
    SMALL_BUDGET,
    algorithm_kwargs,
    compare,
    default_size,
    parse_algo,
    read_csv,
    run_name,
    run_one,
)
from sb3_dreamer.dreamer_v2.sizes import PRESETS, SIZES

ENV = "MinAtar/Breakout-v1"


# --------------------------------------------------------------------------------------------- presets


def test_preset_replaces_defaults_and_explicit_arguments_win():
    model = DreamerV2(ENV, preset="minatar-100k", learning_rate=1e-3, policy_kwargs={"mlp_units": 32})
    assert model.preset == "minatar-100k"
    assert model.train_freq.frequency == 2 and (model.batch_size, model.sequence_length) == (16, 32)
    assert model.replay_ratio == 256
    assert model.learning_rate == 1e-3  # explicit
    assert (model.actor_learning_rate, model.critic_learning_rate) == (1e-4, 2e-4)  # preset
    assert model.policy_kwargs["layer_norm"] is True and model.policy_kwargs["mlp_units"] == 32  # merged
    assert model.policy_kwargs["deter_size"] == SIZES["small"][1]["deter_size"]
    assert PRESETS["minatar-100k"]["policy_kwargs"]["mlp_units"] == 128  # the preset itself is not mutated
    plain = DreamerV2(ENV)
    assert plain.preset is None and plain.train_freq.frequency == 10 and plain.learning_rate == 2e-4


def test_dreamerv3_preset():
    model = DreamerV3(ENV, preset="minatar-100k")
    assert model.model_size == "XXS" and model.replay_ratio == 256
    assert DreamerV3(ENV, preset="minatar-100k", model_size="XS").model_size == "XS"


@pytest.mark.parametrize("cls", [DreamerV2, DreamerV3])
def test_unknown_preset_lists_the_valid_ones(cls):
    with pytest.raises(ValueError, match=r"preset 'huge'.*minatar-100k"):
        cls(ENV, preset="huge")


def test_preset_survives_save_and_load(tmp_path):
    model = DreamerV2(ENV, preset="minatar-100k", policy_kwargs=TINY, learning_starts=20, sequence_length=8)
    model.learn(30)
    model.save(tmp_path / "m")
    loaded = DreamerV2.load(tmp_path / "m")
    assert loaded.preset == "minatar-100k" and loaded.train_freq.frequency == 2
    assert loaded.policy_kwargs["layer_norm"] is True and loaded.critic_learning_rate == 2e-4


def test_compare_uses_the_preset_for_small_budgets():
    assert default_size("dreamerv2", 100_000) == default_size("dreamerv3", SMALL_BUDGET) == "minatar-100k"
    assert (default_size("dreamerv2", 5_000_000), default_size("dreamerv3", 5_000_000)) == ("default", "S")
    assert algorithm_kwargs("dreamerv2", 100_000, {}) == {"preset": "minatar-100k", "learning_starts": 5000}
    assert algorithm_kwargs("dreamerv3", 100_000, {"dreamerv3": "XS"})["model_size"] == "XS"
    assert algorithm_kwargs("dreamerv2", 100_000, {"dreamerv2": "small"})["train_freq"] == 8
    with pytest.raises(ValueError, match="minatar-100k"):
        algorithm_kwargs("dreamerv2", 100_000, {"dreamerv2": "huge"})


# --------------------------------------------------------------------------------------------- variants


def test_variants_parse_and_merge():
    assert parse_algo("dqn-sb3") == ("dqn-sb3", {})
    base, overrides = parse_algo("dreamerv2(train_freq=8, policy_kwargs={'layer_norm': False})")
    assert base == "dreamerv2" and overrides == {"train_freq": 8, "policy_kwargs": {"layer_norm": False}}
    kwargs = algorithm_kwargs("dreamerv2(policy_kwargs={'layer_norm': False})", 100_000, {"dreamerv2": "small"})
    assert kwargs["policy_kwargs"]["layer_norm"] is False and kwargs["policy_kwargs"]["deter_size"] == 128
    model = DreamerV2(ENV, **algorithm_kwargs("dreamerv2(policy_kwargs={'layer_norm': False})", 100_000, {}))
    assert model.policy_kwargs["layer_norm"] is False and model.train_freq.frequency == 2  # preset otherwise
    dqn = algorithm_kwargs("dqn(learning_rate=1e-3)", 100_000, {})
    assert dqn["learning_rate"] == 1e-3 and dqn["batch_size"] == 32
    assert run_name(ENV, "dreamerv2(train_freq=8)", 1) == "MinAtar-Breakout-v1__dreamerv2_train_freq=8__seed1"


@pytest.mark.parametrize(
    "spec, match",
    [
        ("dreamerv9", "Unknown algorithm"),
        ("dreamerv2(train_freq=)", "Cannot read"),
        ("dreamerv2(8)", "Cannot read"),
        ("dreamerv2(train_freq=os.sep)", "Cannot read"),  # literals only: nothing is evaluated
        ("dreamerv2(trian_freq=8)", r"takes no argument\(s\) \['trian_freq'\]"),
    ],
)
def test_bad_variants_are_refused(spec, match):
    with pytest.raises(ValueError, match=match):
        algorithm_kwargs(spec, 1000, {})


# --------------------------------------------------------------------------------------------- diagnostics


def test_head_errors_against_hand_computed_values():
    rewards = torch.tensor([[0.0, 1.0, 0.0, 2.0]])
    predicted = torch.tensor([[0.1, 0.5, 0.0, 1.0]])
    terminal = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    cont = torch.tensor([[0.9, 1.0, 0.2, 0.5]])
    errors = head_errors(predicted, rewards, cont, terminal)
    assert errors["reward_error"].item() == pytest.approx(0.4)  # (0.1 + 0.5 + 0 + 1) / 4
    assert errors["reward_error_nonzero"].item() == pytest.approx(0.75)  # (0.5 + 1) / 2
    assert errors["continue_error"].item() == pytest.approx(0.2)  # (0.1 + 0 + 0.2 + 0.5) / 4
    assert errors["continue_error_terminal"].item() == pytest.approx(0.2)
    none = head_errors(predicted, torch.zeros_like(rewards), cont, torch.zeros_like(terminal))
    assert math.isnan(none["reward_error_nonzero"].item()) and math.isnan(none["continue_error_terminal"].item())


def _batch_and_posterior(model):
    batch = model.replay_buffer.sample_sequences(4, model.sequence_length)
    wm = model.policy.world_model
    inputs = wm.preprocess(batch.observations, 2)
    post, _ = wm.rssm.observe(wm.encoder(inputs), batch.prev_actions, batch.is_first)
    return wm, inputs, batch, post


def test_open_loop_errors_follow_the_prior_with_the_real_actions():
    model = DreamerV2(ENV, policy_kwargs=TINY, seed=0, **{**FAST, "sequence_length": 20})
    model.learn(120)
    wm, inputs, batch, post = _batch_and_posterior(model)
    no_starts = torch.zeros_like(batch.is_first)
    rng = torch.get_rng_state()
    errors = open_loop_errors(wm, inputs, batch.prev_actions, batch.rewards, no_starts, post, horizons=(1, 5, 30))
    assert set(errors) == {"open_loop_image_nll_1", "open_loop_reward_error_1", "open_loop_image_nll_5"} | {
        "open_loop_reward_error_5"
    }  # 30 does not fit a 20-step sequence: the longest horizon sets the start, c = 0
    assert torch.equal(torch.get_rng_state(), rng)  # the prior's modes: no random numbers drawn
    # k = 1 from the posterior at c = 20 - 1 - 30 -> 0, by hand
    with torch.no_grad():
        state = wm.rssm.img_step(type(post)(*(x[:, 0] for x in post)), batch.prev_actions[:, 1], sample=False)
        nll = wm.decoder.nll(state.feat, {k: v[:, 1] for k, v in inputs.items()}).mean()
        reward = (wm.reward(state.feat) - batch.rewards[:, 1]).abs().mean()
    assert errors["open_loop_image_nll_1"].item() == pytest.approx(nll.item(), rel=1e-5)
    assert errors["open_loop_reward_error_1"].item() == pytest.approx(reward.item(), rel=1e-5, abs=1e-7)
    # an episode start right after c ends every comparison: nothing to report
    starts = no_starts.clone()
    starts[:, 1] = 1.0
    masked = open_loop_errors(wm, inputs, batch.prev_actions, batch.rewards, starts, post, horizons=(1, 5, 30))
    assert all(math.isnan(v.item()) for v in masked.values())


@pytest.mark.parametrize("cls", [DreamerV2, DreamerV3])
def test_diagnostics_are_logged(cls):
    kwargs = dict(FAST, train_freq=4) if cls is DreamerV2 else dict(FAST, train_freq=4, train_ratio=None)
    model = cls(ENV, policy_kwargs=TINY, seed=0, **{**kwargs, "sequence_length": 20})
    model.open_loop_interval = 1
    model.learn(100)
    logged = model.logger.name_to_value
    for key in (
        "actor_entropy",
        "imagined_return",
        "lambda_return",
        "value_error",
        "reward_error",
        "continue_error",
        "open_loop_image_nll_1",
        "open_loop_reward_error_5",
        "open_loop_image_nll_15",
    ):
        assert math.isfinite(logged[f"train/{key}"]), key
    assert logged["train/updates_per_env_step"] == 0.25
    assert logged["train/replay_ratio"] == 0.25 * 4 * 20


# --------------------------------------------------------------------------------------------- compare runs

TINY_VARIANT = "dreamerv2(policy_kwargs={'deter_size': 16, 'hidden_size': 16, 'stoch_size': 4, 'classes': 4}, " \
    "batch_size=4, sequence_length=8, train_freq=4)"  # fmt: skip
RUN = dict(steps=300, eval_freq=100, eval_episodes=2, threads=1, device="cpu", save_model=True)


def _parameters(path, cls):
    return [p.detach().clone() for p in cls.load(path, device="cpu").policy.parameters()]


@pytest.mark.parametrize("algo", [TINY_VARIANT, "dqn"])
def test_interrupted_run_continues_exactly(tmp_path, monkeypatch, algo):
    """An uninterrupted run and one killed after its second checkpoint then re-run: the same
    evaluation rows and the same final weights (the envs continue mid-episode)."""
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    run_one(ENV, algo, 0, out=straight, **RUN)
    name = run_name(ENV, algo, 0)
    original = compare_module.EvaluationCallback._on_step

    def interrupt(self):
        if self.num_timesteps >= 250:  # after the checkpoints at ~100 and ~200 steps
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(compare_module.EvaluationCallback, "_on_step", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_one(ENV, algo, 0, out=resumed, **RUN)
    assert os.path.exists(os.path.join(resumed, "checkpoints", f"{name}.ckpt"))
    monkeypatch.setattr(compare_module.EvaluationCallback, "_on_step", original)
    run_one(ENV, algo, 0, out=resumed, **RUN)
    assert not os.listdir(os.path.join(resumed, "checkpoints"))  # removed once finished

    a, b = (read_csv(os.path.join(d, "runs", f"{name}.csv")) for d in (straight, resumed))
    columns = ("env_step", "eval_return_mean", "eval_sampled_return_mean", "train_return_mean", "train_episodes")
    assert [r[c] for r in a for c in columns] == pytest.approx([r[c] for r in b for c in columns], nan_ok=True)
    cls = DreamerV2 if algo != "dqn" else compare_module.ALGORITHMS["dqn"].make_class()
    weights = [_parameters(os.path.join(d, "models", f"{name}.zip"), cls) for d in (straight, resumed)]
    assert len(weights[0]) == len(weights[1]) and all(torch.equal(p, q) for p, q in zip(*weights, strict=True))
    sampled = [r["eval_sampled_return_mean"] for r in a]
    assert all(np.isfinite(sampled)) if algo != "dqn" else all(np.isnan(sampled))


def test_a_checkpoint_of_other_arguments_is_not_resumed(tmp_path, monkeypatch, capsys):
    out = str(tmp_path)
    original = compare_module.EvaluationCallback._on_step

    def interrupt(self):
        if self.num_timesteps >= 150:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(compare_module.EvaluationCallback, "_on_step", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_one(ENV, "dqn", 0, out=out, **RUN)
    monkeypatch.setattr(compare_module.EvaluationCallback, "_on_step", original)
    run_one(ENV, "dqn(learning_rate=1e-3)", 0, out=out, **{**RUN, "steps": 200})  # another run: its own file
    # the same run name with another budget: its checkpoint does not fit and the run starts over
    run_one(ENV, "dqn", 0, out=out, **{**RUN, "steps": 200})
    assert "checkpoint of another version or configuration" in capsys.readouterr().out
    rows = read_csv(os.path.join(out, "runs", f"{run_name(ENV, 'dqn', 0)}.csv"))
    assert [r["env_step"] for r in rows] == [0, 100, 200]


def test_summary_reports_greedy_and_sampled(tmp_path):
    records = compare([ENV], [TINY_VARIANT, "dqn"], steps=200, seeds=1, eval_freq=100, eval_episodes=2,
                      out=str(tmp_path), threads=1, device="cpu")  # fmt: skip
    dreamer, dqn = records
    assert all(math.isfinite(v) for v in dreamer["final_sampled"][:1] + dreamer["auc_sampled"][:1])
    assert math.isnan(dqn["final_sampled"][0]) and math.isfinite(dqn["final"][0])
    summary = open(os.path.join(tmp_path, "summary.md")).read()
    assert "Final return, sampled" in summary and "sampled actions" in summary
