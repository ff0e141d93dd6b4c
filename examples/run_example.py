"""Run one example scenario end to end with the ``loopwright`` CLI and check how it ended.

Usage::

    python examples/run_example.py NAME [--keep] [ARG ...]

``NAME`` is a folder of ``examples/`` (``inflection``, ``never-converges``). The scenario's
workspace is (re)created under ``<repo>/.demo/NAME`` (git-ignored): wiped and set up again on
every run unless ``--keep`` is given and it exists. Its ``loopwright.toml`` is rendered from
``examples/NAME/loopwright.toml`` (``{examples_dir}`` becomes the absolute path of
``examples/``, since the agent runs with the loop's worktree as its working directory).
Then ``loopwright run --workspace <workspace> --config <workspace>/loopwright.toml [ARG ...]``
runs with the terminal attached (live progress), and the result the CLI writes to
``<workspace>/.loopwright/last-result.json`` is checked against the scenario's expected
outcome. Exit code 0 when the outcome is the expected one, 1 otherwise.

``GIT_CEILING_DIRECTORIES`` is set to ``<repo>/.demo`` for the CLI, so git never mistakes the
loopwright repository around the demo folder for the workspace's repository.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess  # nosec B404 - argv lists only, shell=False
import sys
import tarfile
import tempfile
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parent
REPO_DIR = EXAMPLES_DIR.parent
DEMO_DIR = REPO_DIR / ".demo"
CACHE_DIR = DEMO_DIR / "cache"
CONFIG_NAME = "loopwright.toml"
RESULT_PATH = Path(".loopwright") / "last-result.json"
#: Seconds pip may take to download an sdist.
DOWNLOAD_TIMEOUT_SECONDS = 300


class SetupError(RuntimeError):
    """A scenario's workspace could not be set up (download, hash or extraction failed)."""


@dataclass(frozen=True)
class Scenario:
    """An example: how its workspace is made and how its loop must end."""

    name: str
    expected_outcome: str
    setup: Callable[[Path], None]
    min_iterations: int = 1

    @property
    def folder(self) -> Path:
        """``examples/<name>``: the scenario's config template and README."""
        return EXAMPLES_DIR / self.name


# --- inflection: a real third-party sdist from PyPI --------------------------------------


def _pinned_sdist(requirements: Path) -> tuple[str, str]:
    """(file name, sha256) of the single ``name==version --hash=sha256:...`` line."""
    for line in requirements.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        spec, _, digest = line.partition("--hash=sha256:")
        name, _, version = spec.strip().partition("==")
        if not (name and version and digest):
            break
        return f"{name.strip()}-{version.strip()}.tar.gz", digest.strip()
    raise SetupError(f"{requirements}: expected one line 'name==version --hash=sha256:HEX'")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_sdist(requirements: Path, cache_dir: Path = CACHE_DIR) -> Path:
    """The hash-pinned sdist of ``requirements``, from ``cache_dir`` or downloaded from PyPI
    with ``pip download --no-deps --no-binary :all: --require-hashes`` (pip checks the hash;
    a cached file is checked again here). Raises :class:`SetupError`."""
    file_name, digest = _pinned_sdist(requirements)
    cached = cache_dir / file_name
    if cached.is_file() and _sha256(cached) == digest:
        print(f"demo: using cached {cached.relative_to(REPO_DIR)}")
        return cached
    print(f"demo: downloading {file_name} from PyPI (hash-pinned sdist)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        argv = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--require-hashes",
            "-r",
            str(requirements),
            "-d",
            tmp,
        ]
        try:
            subprocess.run(argv, check=True, timeout=DOWNLOAD_TIMEOUT_SECONDS)  # nosec B603
        except (OSError, subprocess.SubprocessError) as exc:
            raise SetupError(f"pip download failed: {exc}") from exc
        downloaded = Path(tmp) / file_name
        if not downloaded.is_file() or _sha256(downloaded) != digest:
            raise SetupError(f"pip did not produce {file_name} with sha256 {digest}")
        downloaded.replace(cached)
    return cached


def extract_flat(archive: Path, target: Path) -> None:
    """Extract the ``.tar.gz`` ``archive`` into ``target`` without its top folder, with
    tarfile's ``data`` filter (no absolute paths, no links out of ``target``, no devices)."""
    with tarfile.open(archive, "r:gz") as tar:
        members = []
        for member in tar.getmembers():
            _, sep, rest = member.name.partition("/")
            if sep and rest:
                member.name = rest
                members.append(member)
        try:
            tar.extractall(target, members=members, filter="data")
        except tarfile.FilterError as exc:
            raise SetupError(f"unsafe member in {archive.name}: {exc}") from exc


def setup_inflection(workspace: Path) -> None:
    """The sdist of inflection 0.5.1 (455 tests), as published on PyPI."""
    extract_flat(fetch_sdist(EXAMPLES_DIR / "inflection" / "requirements.txt"), workspace)


# --- never-converges: a tiny project shipped with the example ----------------------------


def setup_never_converges(workspace: Path) -> None:
    """A copy of ``examples/never-converges/workspace``."""
    shutil.copytree(EXAMPLES_DIR / "never-converges" / "workspace", workspace, dirs_exist_ok=True)


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("inflection", "CONDITIONS_MET", setup_inflection, min_iterations=2),
        Scenario("never-converges", "ITERATION_LIMIT", setup_never_converges),
    )
}


# --- running ------------------------------------------------------------------------------


def render_config(template: Path, target: Path) -> None:
    """Write ``template`` to ``target`` with ``{examples_dir}`` replaced by the absolute path
    of ``examples/`` and ``{python}`` by this interpreter's (the demo's tools are those of
    loopwright's venv), escaped for a TOML basic string; checks the result is valid TOML."""
    escaped = json.dumps(str(EXAMPLES_DIR))[1:-1]
    python = json.dumps(sys.executable)[1:-1]
    text = template.read_text(encoding="utf-8").replace("{examples_dir}", escaped).replace("{python}", python)
    tomllib.loads(text)
    target.write_text(text, encoding="utf-8")


def prepare(scenario: Scenario, workspace: Path, keep: bool) -> None:
    """Create the workspace (wiping an old one unless ``keep``) and its config."""
    if keep and workspace.is_dir():
        print(f"demo: keeping the existing workspace {workspace}")
        return
    if workspace.exists():
        shutil.rmtree(workspace)
    workspace.mkdir(parents=True)
    scenario.setup(workspace)
    render_config(scenario.folder / CONFIG_NAME, workspace / CONFIG_NAME)
    print(f"demo: workspace ready: {workspace}")


def run_cli(workspace: Path, extra: Sequence[str]) -> int:
    """Run ``loopwright run`` on ``workspace`` with the terminal attached; its exit code."""
    cli = Path(sys.executable).parent / "loopwright"
    if not cli.exists():
        print(f"demo: {cli} not found; install loopwright (./dev does)", file=sys.stderr)
        return 127
    argv = [
        str(cli),
        "run",
        "--workspace",
        str(workspace),
        "--config",
        str(workspace / CONFIG_NAME),
    ]
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(DEMO_DIR)}
    return subprocess.run([*argv, *extra], env=env, check=False).returncode  # nosec B603


def load_result(workspace: Path) -> dict[str, object] | None:
    """The LoopResult the CLI wrote to ``<workspace>/.loopwright/last-result.json``, or None."""
    path = workspace / RESULT_PATH
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else None


def verdict(scenario: Scenario, result: dict[str, object] | None, cli_exit: int) -> tuple[bool, str]:
    """(ended as expected?, one line saying how it ended)."""
    if result is None:
        return False, f"no {RESULT_PATH} was written (loopwright exited with code {cli_exit})"
    outcome = result.get("outcome")
    iterations = int(str(result.get("iterations") or 0))
    line = (
        f"outcome {outcome} after {iterations} iteration(s), "
        f"{result.get('features_completed')}/{result.get('features_total')} required conditions "
        f"met, {result.get('total_tokens')} tokens, {result.get('duration_seconds')} s"
    )
    if outcome != scenario.expected_outcome:
        return False, f"{line}; expected {scenario.expected_outcome}"
    if iterations < scenario.min_iterations:
        return False, f"{line}; expected at least {scenario.min_iterations} iterations"
    reason = result.get("stop_reason")
    return True, line + (f"; stopped by: {reason}" if reason else "")


def main(argv: Sequence[str] | None = None) -> int:
    """Set up, run and check one scenario; 0 when it ended as expected, else 1."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("name", choices=sorted(SCENARIOS), help="a folder of examples/")
    parser.add_argument("--keep", action="store_true", help="reuse an existing workspace")
    args, extra = parser.parse_known_args(argv)
    scenario = SCENARIOS[args.name]
    workspace = DEMO_DIR / scenario.name
    try:
        prepare(scenario, workspace, args.keep)
    except (SetupError, OSError) as exc:
        print(f"demo {scenario.name}: setup failed: {exc}", file=sys.stderr)
        return 1
    (workspace / RESULT_PATH).unlink(missing_ok=True)  # never judge a previous run's result
    cli_exit = run_cli(workspace, extra)
    result = load_result(workspace)
    ok, line = verdict(scenario, result, cli_exit)
    print(f"demo {scenario.name}: {'OK' if ok else 'UNEXPECTED'}: {line}")
    if result and result.get("branch"):
        print(f"demo {scenario.name}: the agent's commits: git -C {workspace} log {result['branch']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
