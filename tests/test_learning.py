"""Both algorithms learn a trivial environment (CueEnv: random 5, optimal 10) within about a CPU-minute."""

from envs import CueEnv
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_dreamer import DreamerV3


def test_learns_cue_env(algo, precision="fp32"):
    # one 16 x 12 update every 2 env steps for both (DreamerV3 sets it through train_ratio)
    schedule = {"train_ratio": 96} if algo is DreamerV3 else {"train_freq": 2}
    model = algo(
        CueEnv(),
        learning_starts=200,
        batch_size=16,
        sequence_length=12,
        imagination_horizon=5,
        learning_rate=1e-3,
        actor_learning_rate=3e-4,
        critic_learning_rate=1e-3,
        seed=0,
        precision=precision,
        policy_kwargs=dict(deter_size=32, hidden_size=32, stoch_size=4, classes=4, mlp_units=32, mlp_layers=1),
        **schedule,
    )
    assert model.replay_ratio == 96
    random_mean, _ = evaluate_policy(model, Monitor(CueEnv()), n_eval_episodes=20, deterministic=False)
    model.learn(2000)
    mean, _ = evaluate_policy(model, Monitor(CueEnv()), n_eval_episodes=20, deterministic=True)
    assert random_mean < 7.0  # the untrained policy is near random (5)
    assert mean >= 9.0, mean


def test_learns_cue_env_in_bf16_mixed():
    """The bfloat16 forward passes learn it too (DreamerV3, whose paper code computes in bfloat16)."""
    test_learns_cue_env(DreamerV3, "bf16-mixed")
