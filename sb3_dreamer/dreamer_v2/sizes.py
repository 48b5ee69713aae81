"""Named DreamerV2 model sizes, ``(algorithm arguments, policy_kwargs)`` to pass to :class:`DreamerV2`,
and :data:`PRESETS`, whole configurations taken as ``DreamerV2(env, preset=name)``.

``default`` is the library's defaults, a MinAtar configuration (200-unit RSSM, 3 x 200 MLPs,
50 x 50 sequences; ~4.9M parameters on MinAtar). ``atari`` is the paper's Atari widths and batch
(600-unit RSSM, 4 x 400 MLPs, CNN depth 48, 16 x 50 sequences; also sheeprl's default DreamerV2).
``small`` (~1M parameters) and ``tiny`` are CPU configurations: narrower networks, smaller
batches and (``small``) a lower replay ratio.

>>> kwargs, policy_kwargs = SIZES["small"]
>>> model = DreamerV2("MinAtar/Breakout-v1", policy_kwargs=policy_kwargs, **kwargs)
"""

from __future__ import annotations

SIZES: dict[str, tuple[dict, dict]] = {
    "default": ({}, {}),
    "small": (
        {"batch_size": 16, "sequence_length": 32, "train_freq": 8},
        {
            "deter_size": 128,
            "hidden_size": 128,
            "stoch_size": 16,
            "classes": 16,
            "mlp_units": 128,
            "mlp_layers": 2,
            "cnn_depth": 16,
        },
    ),
    "atari": (
        {"batch_size": 16, "sequence_length": 50},
        {"deter_size": 600, "hidden_size": 600, "mlp_units": 400, "mlp_layers": 4, "cnn_depth": 48},
    ),
    "tiny": (
        {"batch_size": 8, "sequence_length": 16},
        {
            "deter_size": 64,
            "hidden_size": 64,
            "stoch_size": 8,
            "classes": 8,
            "mlp_units": 64,
            "mlp_layers": 2,
            "cnn_depth": 8,
        },
    ),
}


#: ``DreamerV2(env, preset=name)``: constructor arguments that replace the defaults (explicit ones win).
#:
#: ``minatar-100k``: a sample-efficient configuration for budgets of about 100k env steps, one for
#: every MinAtar game. The ``small`` widths and 16 x 32 sequences, with three changes to the paper's
#: 50M-step Atari settings, each measured one at a time in ``benchmarks/minatar_ablation/``:
#:
#: - ``train_freq=2``: one update every 2 env steps, 256 replayed steps per env step (``small``: 64;
#:   danijar/dreamerv3's atari100k ``run.train_ratio`` 256; RajGhugare19's MinAtar config 250);
#: - learning rates 3e-4 / 1e-4 / 2e-4 for model / actor / critic (the paper's 2e-4 / 4e-5 / 1e-4
#:   are for ~3M updates; danijar/dreamerv2's DMC model rate 3e-4, crafter actor 1e-4, critic 2e-4);
#: - ``layer_norm=True`` in every MLP and the CNN (danijar/dreamerv2's crafter config, DreamerV3),
#:   which keeps those higher rates stable.
#:
#: The target critic is still copied every 100 updates (the paper), every 200 env steps here.
PRESETS: dict[str, dict] = {
    "minatar-100k": {
        "batch_size": 16,
        "sequence_length": 32,
        "train_freq": 2,
        "learning_rate": 3e-4,
        "actor_learning_rate": 1e-4,
        "critic_learning_rate": 2e-4,
        "policy_kwargs": {**SIZES["small"][1], "layer_norm": True},
    },
}


#: Every named configuration in one shape, constructor arguments by name (the sizes above, their
#: ``policy_kwargs`` included, and each preset as ``{"preset": name}``): what ``compare`` and the
#: command line pass for ``--dreamer-size NAME``.
CONFIGURATIONS: dict[str, dict] = {
    **{name: {**kwargs, "policy_kwargs": dict(policy_kwargs)} for name, (kwargs, policy_kwargs) in SIZES.items()},
    **{name: {"preset": name} for name in PRESETS},
}
#: The configuration of the class defaults.
DEFAULT_CONFIGURATION = "default"
