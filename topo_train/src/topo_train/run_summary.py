"""What a run (or a sweep) says when it ends: its metrics, its files, its MLflow run and the
command that evaluates it.

Metric names are grouped by prefix (``loss/…``, ``spatial/…``, ``val/…``) and rounded; no
family is named here. The best value of a validation metric is read back from ``metrics.jsonl``
(lower is better for a loss, higher for an accuracy or a correlation; others have no "best").
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

from topo_train.tracking import sqlite_absolute
from topo_train.trainer import METRICS_FILE

LINE_WIDTH = 100
LOWER_IS_BETTER = ("loss", "poisson", "error")
HIGHER_IS_BETTER = ("accuracy", "correlation")
_LAST_STEP = "step"


def number(value: float) -> str:
    """4 significant digits (``0.1235``, ``1.292e+05``)."""
    return f"{value:.4g}"


def direction(key: str) -> str | None:
    """``min``, ``max`` or None (no better direction known) for a metric name."""
    name = key.lower()
    if any(word in name for word in HIGHER_IS_BETTER):
        return "max"
    if any(word in name for word in LOWER_IS_BETTER):
        return "min"
    return None


def headline_keys(keys: Iterable[str], prefix: str = "val/") -> list[str]:
    """The keys under ``prefix`` that are not the breakdown of another key
    (``val/accuracy``, not ``val/accuracy/task0``)."""
    every = set(keys)
    return sorted(
        key for key in every if key.startswith(prefix) and key.rsplit("/", 1)[0] not in every
    )


def last_values(metrics_path: Path) -> dict[str, float]:
    """Each key's last value in a ``metrics.jsonl`` (``step``: the last step), read line by
    line."""
    last: dict[str, float] = {}
    if not metrics_path.is_file():
        return last
    with open(metrics_path) as stream:
        for line in stream:
            if line.strip():
                last.update(json.loads(line))
    return last


def best_values(metrics_path: Path) -> dict[str, tuple[float, int]]:
    """Best (value, step) of each headline validation metric logged more than once."""
    best: dict[str, tuple[float, int]] = {}
    counts: dict[str, int] = defaultdict(int)
    if not metrics_path.is_file():
        return best
    with open(metrics_path) as stream:
        for line in stream:
            if not line.strip():
                continue
            record = json.loads(line)
            for key, value in record.items():
                sense = direction(key) if key.startswith("val/") else None
                if sense is None or not isinstance(value, int | float) or math.isnan(value):
                    continue
                counts[key] += 1
                held = best.get(key)
                if held is None or (value < held[0] if sense == "min" else value > held[0]):
                    best[key] = (float(value), int(record[_LAST_STEP]))
    keep = set(headline_keys(best))
    return {key: best[key] for key in sorted(keep) if counts[key] > 1}


def _wrapped(label: str, items: list[str], indent: int = 14) -> list[str]:
    """``label`` then ``items`` separated by `` · ``, wrapped at :data:`LINE_WIDTH`."""
    lines, line = [], f"  {label:<{indent - 2}}"
    for index, item in enumerate(items):
        piece = item if index == 0 else f" · {item}"
        if index and len(line) + len(piece) > LINE_WIDTH:
            lines.append(line)
            line, piece = " " * indent, item
        line += piece
    lines.append(line)
    return lines


def metric_lines(metrics: Mapping[str, float]) -> list[str]:
    """The metrics grouped by their first name part, rounded."""
    groups: dict[str, list[str]] = defaultdict(list)
    for key in sorted(metrics):
        group, _, rest = key.partition("/")
        value = metrics[key]
        text = number(value) if isinstance(value, int | float) else str(value)
        groups[group if rest else "other"].append(f"{rest or key} {text}")
    lines = []
    for group in sorted(groups, key=lambda g: (g == "other", g)):
        lines += _wrapped(group, groups[group])
    return lines


def shown_path(path: Path) -> Path:
    """``path`` relative to the working directory when inside it (shorter to read and paste
    from where the run was started), else as it is."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def run_files(run_dir: Path) -> list[str]:
    """What a run wrote (the existing ones), relative to ``run_dir``; a directory ends in /."""
    names = ["model.pt", "last.pt", METRICS_FILE, "positions"]
    names += [f"figures/{p.name}" for p in sorted((run_dir / "figures").glob("*.png"))]
    names += [p.name for p in sorted(run_dir.glob("*.log"))]
    return [f"{n}/" if (run_dir / n).is_dir() else n for n in names if (run_dir / n).exists()]


def run_summary(
    run_dir: Path,
    metrics: Mapping[str, float],
    tracking_uri: str | None,
    run_id: str | None,
    evaluation_command: str | None,
) -> str:
    """The text a run logs when it ends.

    Args:
        run_dir: the run directory.
        metrics: the run's final metrics (what :func:`topo_train.train` returns).
        tracking_uri: the MLflow store (None: tracking off).
        run_id: the MLflow run.
        evaluation_command: the next command, from the objective (None: none).
    """
    metrics_file = run_dir / METRICS_FILE
    step = last_values(metrics_file).get(_LAST_STEP)
    title = f"run finished: {run_dir}" + ("" if step is None else f" (step {int(step)})")
    lines = [title, "final metrics", *metric_lines(metrics)]
    best = best_values(metrics_file)
    if best:
        lines.append("best validation")
        lines += _wrapped("", [f"{k} {number(v)} at step {s}" for k, (v, s) in best.items()], 4)
    lines.append(f"files in {run_dir}/")
    lines += _wrapped("", run_files(run_dir), indent=4)
    if tracking_uri is not None and run_id is not None:
        uri = sqlite_absolute(tracking_uri)
        lines.append(f"MLflow run {run_id} in {uri}")
        server = uri.startswith(("http://", "https://"))
        lines.append(
            f"  browse it:  {uri}"
            if server
            else f"  browse it:  mlflow ui --backend-store-uri {uri}"
        )
    if evaluation_command is not None:
        lines.append("evaluate it:")
        lines.append(f"  {evaluation_command}")
    return "\n".join(lines)


def job_status(job_dir: Path, failed: set[str]) -> str:
    """``failed``, ``finished`` (``model.pt`` written) or ``incomplete``."""
    if str(job_dir) in failed or job_dir.name in failed or (job_dir / "FAILED").exists():
        return "failed"
    return "finished" if (job_dir / "model.pt").is_file() else "incomplete"


def sweep_table(sweep_dir: Path, failed: Iterable[str] = ()) -> str:
    """One line per job directory of ``sweep_dir``: name, status, the last ``loss/total`` and
    the last headline validation accuracy / correlation in its ``metrics.jsonl``."""
    failed = {str(Path(f)) for f in failed} | {Path(f).name for f in failed}
    jobs = sorted(
        p
        for p in sweep_dir.iterdir()
        if p.is_dir() and ((p / ".hydra").is_dir() or (p / "metrics.jsonl").is_file())
    )
    rows = []
    for job in jobs:
        last = last_values(job / "metrics.jsonl")
        keys = ["loss/total"] + [k for k in headline_keys(last) if direction(k) == "max"]
        values = [f"{k} {number(last[k])}" for k in keys if isinstance(last.get(k), int | float)]
        rows.append((job.name, job_status(job, failed), " · ".join(values) or "-"))
    if not rows:
        return f"sweep {sweep_dir}: no jobs"
    width = max(len(name) for name, _, _ in rows)
    header = [f"sweep {sweep_dir}: {len(rows)} job(s)", f"  {'job':<{width}}  {'status':<10}  last"]
    return "\n".join(header + [f"  {n:<{width}}  {s:<10}  {m}" for n, s, m in rows])
