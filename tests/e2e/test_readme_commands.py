"""The README's commands as a user pastes them, in order, in a fresh copy of the repository.

Every line of the README's ```bash blocks and every `python -m topo_train|topo_eval` command of
its families table runs as written, with short overrides appended where a run is long. Three
kinds of line are checked rather than run: an install (`pip install … && <command>` runs only
`<command>`; installing would re-point this environment's editable installs to the copy),
`python -m pytest` (what CI runs) and `mlflow ui` (started on a free port, with one worker,
until it answers, then stopped). A command shown twice (the tour's `python -m topo_train`, the
quick start's run) runs once. Afterwards `git status` in the copy shows nothing new: every
folder a run writes is ignored.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.e2e.test_dvc import repository  # noqa: F401  (the repository fixture)
from tests.e2e.test_sensorium_training import SMALL_SIMULATION
from tests.topo_eval.test_topography_task import FAST as SMALL_TOPOGRAPHY

pytestmark = pytest.mark.slow

README = ROOT / "README.md"
TDANN = [
    "trainer.max_steps=2",
    "trainer.progress=false",
    "data.image_size=32",
    "data.batch_size=8",
    "data.train_per_class=4",
    "data.val_per_class=1",
    "positions.n_neighborhoods=300",
]
# What makes each kind of training run take seconds; the first match wins.
SHORT: list[tuple[str, list[str]]] = [
    (
        "experiment=sensorium",
        [SMALL_SIMULATION, "data.scale=0.5", "data.batch_size=32", "trainer.max_epochs=1"]
        + ["trainer.progress=false"],
    ),
    ("experiment=retina_fit", ["trainer.max_steps=5", "trainer.progress=false"]),
    (
        "experiment=spatial_multitask",
        ["trainer.max_epochs=2", "trainer.val_every_epochs=1", "model.widths=[32,32]"]
        + ["trainer.progress=false"],
    ),
    ("", TDANN),  # no experiment: the TDANN default and its variants
]


def readme_commands(text: str) -> list[str]:
    """The command lines of the README's ```bash blocks and of its table's inline
    `python -m topo_train …` / `python -m topo_eval …` commands, in the order they appear."""
    commands, in_bash, in_other = [], False, False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            if in_bash or in_other:
                in_bash = in_other = False
            else:
                in_bash, in_other = stripped == "```bash", stripped != "```bash"
        elif in_bash:
            if stripped and not stripped.startswith("#"):
                commands.append(stripped)
        elif not in_other and stripped.startswith("|"):
            commands += re.findall(r"`(python -m topo_(?:train|eval)\b[^`]*)`", stripped)
    return commands


def without_comment(line: str) -> str:
    """``line`` without a trailing shell comment (so that appended overrides are not in it)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line


def shortened(command: str, exclude_keys: list[str]) -> str:
    """A training command with its short overrides appended (a topography report: fewer
    stimuli and samples; other evaluations run as written). Without an explicit `run_dir=`
    the run directory is named after the overrides, so the appended keys join Hydra's
    `exclude_keys`: the run writes where the command as written writes, and a later README
    command reads it there."""
    written = shlex.split(command)
    if written[:3] == ["python", "-m", "topo_eval"] and "task=topography" in written:
        # every analysis of the report, each on fewer stimuli and samples
        return " ".join([command, *map(shlex.quote, SMALL_TOPOGRAPHY)])
    if written[:3] != ["python", "-m", "topo_train"]:
        return command
    extra = next(overrides for marker, overrides in SHORT if marker in command)
    if not any(word.startswith("run_dir=") for word in written):
        keys = [override.split("=")[0].lstrip("+") for override in extra]
        clash = [word for word in written if word.split("=")[0] in keys]
        assert not clash, f"{command!r} sets {clash} itself; give it a run_dir= to shorten it"
        extra = [
            *extra,
            f"hydra.job.config.override_dirname.exclude_keys=[{','.join(exclude_keys + keys)}]",
        ]
    return " ".join([command, *map(shlex.quote, extra)])


def ci_line() -> str:
    """The install-and-test line of .ci/run."""
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    return next(line for line in lines if line.startswith("pip install"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_until_it_answers(command: str, cwd: Path, env: dict[str, str], log: Path) -> None:
    """Start `mlflow ui …` on a free port with one worker (its output in ``log``), wait for an
    HTTP answer, stop it."""
    port = free_port()
    with log.open("w") as output:
        process = subprocess.Popen(
            f"{command} --port {port} --workers 1",  # one answers as well; four cost 2.5× the CPU
            shell=True,
            cwd=cwd,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"{command!r} exited: {log.read_text()[-4000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
                    assert answer.status == 200
                    return
            except OSError:
                assert time.monotonic() < deadline, f"{command!r} did not answer in 120 s"
                time.sleep(1)
    finally:
        with contextlib.suppress(ProcessLookupError):  # gone already
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_readme_commands_find_every_block_and_the_families_table():
    commands = readme_commands(README.read_text())
    assert sum(command.startswith("pip install") for command in commands) == 2
    assert any(command.startswith("mlflow ui") for command in commands)
    assert sum(command.startswith("python -m topo_eval") for command in commands) >= 5
    table = [c for c in commands if c.startswith("python -m topo_train") and "run_dir=" in c]
    assert len(table) >= 4  # one per family


def test_every_readme_command_runs_as_pasted(repository):  # noqa: F811
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("TOPO_CACHE_DIR", "MLFLOW_TRACKING_URI"):  # a user's shell sets neither
        env.pop(name, None)
    # `mlflow ui` also starts a GenAI job runner and seven task consumers by default (~40 s of
    # CPU here), which topo never uses; the page under test answers the same without them.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    train = yaml.safe_load((repository / "conf" / "train.yaml").read_text())
    exclude_keys = train["hydra"]["job"]["config"]["override_dirname"]["exclude_keys"]
    ci_install, ci_test = ci_line().split(" && ")
    ran: set[str] = set()
    for line in readme_commands(README.read_text()):
        command = without_comment(line)
        if command.startswith("pip install"):
            install, _, command = command.partition(" && ")
            assert install in (ci_install, ci_install.replace(' -e ".[dev]"', "")), (
                f"{line!r} installs other than CI does ({ci_install!r})"
            )
            if command == ci_test:
                assert line == ci_line(), f"{line!r} is not what .ci/run runs"
                continue
        if command.startswith("mlflow ui"):
            serve_until_it_answers(command, repository, env, repository.parent / "mlflow_ui.log")
            continue
        run = shortened(command, exclude_keys)
        if run in ran:  # the tour's `python -m topo_train` is the quick start's run: finished
            continue  # (a second run of a finished run: tests/topo_train/test_train.py)
        ran.add(run)
        started = time.monotonic()
        result = subprocess.run(
            ["bash", "-c", run],
            cwd=repository,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, (
            f"README command failed: {line}\nran: {run}\n{(result.stdout + result.stderr)[-4000:]}"
        )
        print(f"\n{time.monotonic() - started:6.1f} s  {run}")  # shown with -s or on a failure
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=repository, capture_output=True, text=True
    ).stdout
    assert status == "", f"the README's commands left files git does not ignore:\n{status}"
