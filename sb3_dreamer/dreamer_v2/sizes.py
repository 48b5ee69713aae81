"""Named DreamerV2 model sizes: ``(algorithm arguments, policy_kwargs)`` to pass to :class:`DreamerV2`.

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
