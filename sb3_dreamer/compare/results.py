"""A comparison folder's files: per-run CSVs, ``meta.json`` and the hardware and versions it records."""

from __future__ import annotations

import csv
import datetime
import json
import math
import os
import platform
import re
from collections.abc import Sequence
from typing import Any

import torch as th
from stable_baselines3.common.utils import get_device

#: Columns of every per-run CSV.
CSV_COLUMNS = (
    "env",
    "algo",
    "seed",
    "env_step",
    "eval_return_mean",
    "eval_return_std",
    "eval_sampled_return_mean",
    "eval_sampled_return_std",
    "eval_episodes",
    "train_return_mean",
    "train_episodes",
    "wall_seconds",
    "eval_seconds",
)


def run_name(env_id: str, algo: str, seed: int) -> str:
    """The file name of a run; a variant's arguments (see :func:`parse_algo`) become ``_``-separated."""
    algo_part = re.sub(r"[^A-Za-z0-9.=+-]+", "_", algo).strip("_")
    return f"{env_id.replace('/', '-')}__{algo_part}__seed{seed}"


def write_csv(path: str, rows: Sequence[dict[str, Any]]) -> None:
    """Write rows atomically (a temporary file beside ``path``, then a rename)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def read_csv(path: str) -> list[dict[str, Any]]:
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    for row in rows:
        for key in row:
            if key not in ("env", "algo"):
                row[key] = float(row[key]) if row[key] not in ("", "nan") else float("nan")
    return rows


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def usable_cores() -> int:
    """CPU cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def hardware(device: str = "auto") -> dict[str, Any]:
    """CPU model and cores, and the GPU model when ``device`` uses one."""
    from sb3_dreamer.common.utils import cpu_model

    torch_device = get_device(device)
    gpu = th.cuda.get_device_name(torch_device) if torch_device.type == "cuda" else None
    return {"cpu": cpu_model(), "cpu_cores": usable_cores(), "gpu": gpu}


def _git_commit(path: str) -> str | None:
    """The commit of the git checkout holding ``path`` (with ``+dirty`` for uncommitted changes), if any."""
    import subprocess

    try:
        run = dict(cwd=path, capture_output=True, text=True, timeout=10, check=True)
        commit = subprocess.run(["git", "rev-parse", "HEAD"], **run).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], **run).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import sb3_dreamer

    # the package's own version from the source (an editable install's metadata keeps the version it was installed at)
    found = {"python": platform.python_version(), "sb3-dreamer": sb3_dreamer.__version__}
    commit = _git_commit(os.path.dirname(os.path.abspath(sb3_dreamer.__file__)))
    if commit:
        found["sb3-dreamer-commit"] = commit
    for package in ("stable-baselines3", "sb3-contrib", "torch", "gymnasium", "numpy", "minatar"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    return repr(value)


def _write_json(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as file:
        json.dump(data, file, indent=2)
        file.write("\n")
    os.replace(tmp, path)


def load_runs(out: str) -> dict[tuple[str, str], dict[int, list[dict[str, Any]]]]:
    """Finished runs in ``out/runs``: ``{(env, algo): {seed: rows}}``."""
    runs: dict[tuple[str, str], dict[int, list[dict[str, Any]]]] = {}
    runs_dir = os.path.join(out, "runs")
    for file_name in sorted(os.listdir(runs_dir)) if os.path.isdir(runs_dir) else []:
        if not file_name.endswith(".csv") or file_name.endswith(".partial.csv"):
            continue
        rows = read_csv(os.path.join(runs_dir, file_name))
        if rows:
            runs.setdefault((rows[0]["env"], rows[0]["algo"]), {})[int(rows[0]["seed"])] = rows
    return runs
