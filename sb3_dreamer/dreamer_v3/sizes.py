"""DreamerV3's named model sizes: ``policy_kwargs`` for :class:`~sb3_dreamer.DreamerV3` (``model_size=...``).

The widths of the 2023 paper's code (danijar/dreamerv3 ``configs.yaml``: small, medium, large,
xlarge) and sheeprl's extra-small XS, with 32
categorical latents of 32 classes; the RSSM's hidden layers are as wide as the MLPs. ``XXS`` is
ours, for CPUs: the widths of DreamerV2's ``small`` size (16 latents of 16 classes), so the two
algorithms can be compared at equal network size.

========  =====  =====  =========  ==========  =======
size      deter  units  cnn depth  MLP layers  latents
========  =====  =====  =========  ==========  =======
XXS       128    128    16         2           16 x 16
XS        256    256    24         1           32 x 32
S         512    512    32         2           32 x 32
M         1024   640    48         3           32 x 32
L         2048   768    64         4           32 x 32
XL        4096   1024   96         5           32 x 32
========  =====  =====  =========  ==========  =======
"""

from __future__ import annotations

from typing import Any


def _size(deter: int, units: int, depth: int, layers: int, latents: int = 32) -> dict[str, Any]:
    return {
        "deter_size": deter,
        "hidden_size": units,
        "mlp_units": units,
        "cnn_depth": depth,
        "mlp_layers": layers,
        "stoch_size": latents,
        "classes": latents,
    }


SIZES: dict[str, dict[str, Any]] = {
    "XXS": _size(128, 128, 16, 2, latents=16),
    "XS": _size(256, 256, 24, 1),
    "S": _size(512, 512, 32, 2),
    "M": _size(1024, 640, 48, 3),
    "L": _size(2048, 768, 64, 4),
    "XL": _size(4096, 1024, 96, 5),
}


#: ``DreamerV3(env, preset=name)``: constructor arguments that replace the defaults (explicit ones win).
#:
#: ``minatar-100k``: for budgets of about 100k env steps. ``train_ratio`` 256 (danijar/dreamerv3's
#: atari100k configuration; the class default 64 is its 200M-frame value) at the ``XXS`` widths (the
#: widths of DreamerV2's preset, so the two compare at equal network size on a CPU). Every other
#: setting stays the paper's fixed one.
PRESETS: dict[str, dict[str, Any]] = {
    "minatar-100k": {"model_size": "XXS", "train_ratio": 256.0},
}


#: Every named configuration in one shape, constructor arguments by name (each size as
#: ``{"model_size": name}``, each preset as ``{"preset": name}``), as in ``dreamer_v2.sizes``.
CONFIGURATIONS: dict[str, dict[str, Any]] = {
    **{name: {"model_size": name} for name in SIZES},
    **{name: {"preset": name} for name in PRESETS},
}
#: The configuration of the class defaults.
DEFAULT_CONFIGURATION = "S"
