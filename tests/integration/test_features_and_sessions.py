"""Feature lists and agent sessions end to end (issue 10.2, 10.3): `loopwright run` on a real
repository with a scripted agent and a features.json; the fake Claude Code CLI (a real executable
on PATH, tests/agent_cli_fakes.py) recording its argv and stdin through a real loop; bad feature
lists refused with the field named, exit 2, nothing written."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from loopwright.adapters.local.sandbox import SubprocessSandbox
from loopwright.engine import LoopFramework
from loopwright.engine.local import build_agent
from loopwright.models import IterationEventType, LoopConfig, LoopOutcome
from tests.agent_cli_fakes import SESSION, THREAD, install_fake_cli, recorded_calls
from tests.integration.helpers import cli, cli_json, make_repo

EV = IterationEventType

#: A scripted agent: reads its prompt, and creates feat_<name>.txt for the feature it names.
AGENT = """
import os, pathlib, re
prompt = pathlib.Path(os.environ["LOOPWRIGHT_PROMPT_FILE"]).read_text()
match = re.search(r"## Current feature \\((\\d+) of (\\d+)\\): (\\S+)", prompt)
if match:
    pathlib.Path(f"feat_{match.group(3)}.txt").write_text(match.group(1) + "\\n")
"""


def _feature(name: str) -> dict[str, Any]:
    check = f"import pathlib,sys; sys.exit(0 if pathlib.Path('feat_{name}.txt').exists() else 1)"
    return {
        "name": name,
        "description": f"add feat_{name}.txt",
        "acceptance_conditions": [
            {"type": "CUSTOM", "name": "file", "command": [sys.executable, "-c", check]}
        ],
    }


def _repo(tmp_path: Path, features: Any, *, raw: str | None = None, name: str = "features.json") -> Path:
    repo = make_repo(tmp_path / "repo", {"README.md": "demo\n"})
    (tmp_path / "agent.py").write_text(AGENT)
    config = {
        "goal": "build the three features",
        "max_iterations": 6,
        "exit_conditions": [{"type": "CUSTOM", "name": "readme", "command": ["test", "-f", "README.md"]}],
        "agent": {"kind": "command", "command": [sys.executable, str(tmp_path / "agent.py")]},
    }
    (repo / "loopwright.toml").write_text(_toml(config))
    (repo / name).write_text(raw if raw is not None else json.dumps(features))
    return repo


def _toml(config: dict[str, Any]) -> str:
    """The small config above as TOML (strings, ints and one level of arrays of tables)."""
    lines = [f"goal = {json.dumps(config['goal'])}", f"max_iterations = {config['max_iterations']}"]
    for condition in config["exit_conditions"]:
        lines += ["[[exit_conditions]]", *[f"{k} = {json.dumps(v)}" for k, v in condition.items()]]
    lines += ["[agent]", *[f"{k} = {json.dumps(v)}" for k, v in config["agent"].items()]]
    return "\n".join(lines) + "\n"


def test_a_three_feature_list_completes_in_order(tmp_path: Path) -> None:
    # Given a repository with three features in features.json and an agent doing the one it is told
    repo = _repo(tmp_path, [_feature("signup"), _feature("login"), _feature("logout")])
    # When the loop runs
    result = cli_json("run", "-w", str(repo), "--loop-id", "feat", "--quiet")
    # Then the features are done one per iteration, in order, and the loop completes
    assert result["outcome"] == "CONDITIONS_MET", result
    assert (result["iterations"], result["features_completed"], result["features_total"]) == (3, 3, 3)
    events = cli_json("events", "feat", "-w", str(repo), "--type", "FEATURE_COMPLETED")
    assert [(e["iteration"], e["data"]["feature"], e["data"]["features_completed"]) for e in events] == [
        (1, "signup", 1),
        (2, "login", 2),
        (3, "logout", 3),
    ]
    status = cli_json("status", "feat", "-w", str(repo))
    assert (status["features_completed"], status["features_total"]) == (3, 3)
    assert status["features_done"] == ["signup", "login", "logout"]
    shown = cli("status", "feat", "-w", str(repo)).stdout
    assert "features 3/3" in shown


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('[{"name": "a",', "features.json: invalid JSON"),
        (
            json.dumps([_feature("a"), _feature("a")]),
            "features.json: features.1.name: 'a' is used twice",
        ),
        (
            json.dumps([{"name": "a", "description": "d", "acceptance_conditions": []}]),
            "features.json: features.0.acceptance_conditions: List should have at least 1 item",
        ),
        (
            json.dumps([{"name": "a", "description": "d"}]),
            "features.json: features.0.acceptance_conditions: required field is missing",
        ),
    ],
)
def test_a_bad_feature_list_is_refused_with_the_field_named_and_nothing_written(
    tmp_path: Path, raw: str, message: str
) -> None:
    repo = _repo(tmp_path, None, raw=raw)
    done = cli("run", "-w", str(repo), "--quiet")
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not (repo / ".loopwright").exists()


def test_a_feature_list_in_two_places_is_refused(tmp_path: Path) -> None:
    toml = (
        '[[features]]\nname = "one"\ndescription = "d"\n'
        '[[features.acceptance_conditions]]\ntype = "CUSTOM"\ncommand = "true"\n'
    )
    repo = _repo(tmp_path, None, raw=toml, name="features.toml")
    config = repo / "loopwright.toml"
    config.write_text(toml + config.read_text())  # a feature list in the config too
    done = cli("run", "-w", str(repo), "--quiet")
    assert done.returncode == 2 and "the feature list is given here and in" in done.stderr
    assert not (repo / ".loopwright").exists()


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder first on the PATH of this process (and so of what the sandbox runs)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return folder


def _cli_loop(
    tmp_path: Path, runs: int = 2, kind: str = "claude-code", **config: Any
) -> tuple[LoopFramework, Path]:
    """A loop whose check holds once the fake claude ran ``runs`` times; the fake's "ok" turn
    reads 1204 tokens of context (tests/agent_cli_fakes.py CLAUDE_OK), 80% of a 1500-token window."""
    repo = make_repo(tmp_path / "repo", {"README.md": "demo\n"})
    record = tmp_path / "calls.jsonl"
    check = (
        f"import pathlib,sys; p=pathlib.Path({str(record)!r}); "
        f"sys.exit(0 if len(p.read_text().splitlines())>={runs} else 1)"
    )
    loop_config = LoopConfig.model_validate(
        {
            "goal": "work twice",
            "max_iterations": 4,
            "max_stuck_iterations": None,  # the fake CLI changes no file (not about stuck detection)
            "evaluation_cache": False,  # the check reads a file outside the tree (the fake's calls)
            "exit_conditions": [
                {"type": "CUSTOM", "name": "twice", "command": [sys.executable, "-c", check]}
            ],
            "agent": {
                "kind": kind,
                "env": {"FAKE_CLI_RECORD": str(record)},
                "timeout_seconds": 60,
                **config.pop("agent", {"context_window_tokens": 1500}),
            },
            **config,
        }
    )
    sandbox = SubprocessSandbox()
    agent = build_agent(loop_config, sandbox)
    assert agent is not None and agent.supports_sessions
    return LoopFramework(loop_config, workspace=repo, loop_id="claude", sandbox=sandbox, agent=agent), record


@pytest.mark.slow
def test_claude_continues_its_session_while_the_context_fits(tmp_path: Path, bin_dir: Path) -> None:
    install_fake_cli(bin_dir, "claude", "ok")
    loop, record = _cli_loop(tmp_path, handoff_context_percent=90)  # 80% fits
    result = loop.run()
    assert result.outcome is LoopOutcome.CONDITIONS_MET, loop.store.list_events("claude")
    first, second = recorded_calls(record)
    assert "--resume" not in first["argv"]
    assert second["argv"][second["argv"].index("--resume") + 1] == SESSION
    assert "## Handoff" not in second["stdin"]
    assert result.sessions_used == 1 and result.handoff_reason is None


@pytest.mark.slow
def test_claude_gets_a_fresh_session_with_a_handoff_past_the_threshold(tmp_path: Path, bin_dir: Path) -> None:
    install_fake_cli(bin_dir, "claude", "ok")
    loop, record = _cli_loop(tmp_path, handoff_context_percent=80)  # 80% reaches it
    result = loop.run()
    assert result.outcome is LoopOutcome.CONDITIONS_MET, loop.store.list_events("claude")
    first, second = recorded_calls(record)
    assert "--resume" not in first["argv"] and "--resume" not in second["argv"]
    assert "## Handoff from the previous agent session" in second["stdin"]
    assert "context 80% used" in second["stdin"] and "iteration 1: Fixed add()" in second["stdin"]
    assert result.sessions_used == 2 and "context 80% used" in (result.handoff_reason or "")
    (handoff,) = loop.store.list_events("claude", types=[EV.SESSION_HANDOFF])
    assert handoff.iteration == 2 and handoff.data["previous_session"] == SESSION


@pytest.mark.slow
def test_claude_resumes_while_it_fits_then_hands_off_once_its_context_is_full(
    tmp_path: Path, bin_dir: Path
) -> None:
    # Given the fake claude whose second run reads 85% of its 200000-token window
    install_fake_cli(bin_dir, "claude", "ok", then=["full-context", "ok"])
    loop, record = _cli_loop(tmp_path, runs=3, agent={}, handoff_context_percent=80)
    # When the loop runs three iterations
    result = loop.run()
    # Then run 2 resumed run 1's session, and run 3 started a fresh one with the handoff summary
    assert result.outcome is LoopOutcome.CONDITIONS_MET, loop.store.list_events("claude")
    first, second, third = recorded_calls(record)
    assert "--resume" not in first["argv"]
    assert second["argv"][second["argv"].index("--resume") + 1] == SESSION
    assert "## Handoff" not in second["stdin"]
    assert "--resume" not in third["argv"]
    assert "## Handoff from the previous agent session" in third["stdin"]
    assert "context 85% used (handoff at 80%" in third["stdin"]
    assert "iteration 1: Fixed add()" in third["stdin"] and "iteration 2: Fixed add()" in third["stdin"]
    # and the handoff is counted and recorded
    assert result.sessions_used == 2 and "context 85% used" in (result.handoff_reason or "")
    (handoff,) = loop.store.list_events("claude", types=[EV.SESSION_HANDOFF])
    assert (handoff.iteration, handoff.data["session_iterations"]) == (3, 2)


@pytest.mark.slow
def test_codex_resumes_its_thread_and_hands_it_off_after_session_max_iterations(
    tmp_path: Path, bin_dir: Path
) -> None:
    install_fake_cli(bin_dir, "codex", "ok")
    loop, record = _cli_loop(tmp_path, runs=3, kind="codex", agent={}, session_max_iterations=2)
    result = loop.run()
    assert result.outcome is LoopOutcome.CONDITIONS_MET, loop.store.list_events("claude")
    first, second, third = recorded_calls(record)
    assert first["argv"][-1] == "-" and "resume" not in first["argv"]
    assert second["argv"][-3:] == ["resume", THREAD, "-"]
    assert "resume" not in third["argv"] and "the session ran 2 iterations" in third["stdin"]
    assert result.sessions_used == 2


def test_the_session_limit_stops_the_loop_and_raising_it_lets_it_resume(tmp_path: Path) -> None:
    # Given a command agent (no sessions: one per iteration) limited to 1 agent session, whose
    # loop converges at its third iteration
    repo = _repo(tmp_path, [_feature("signup"), _feature("login"), _feature("logout")])
    config = repo / "loopwright.toml"
    config.write_text("max_sessions = 1\n" + config.read_text())
    # When it runs
    done = cli("run", "-w", str(repo), "--loop-id", "capped", "--quiet", "--json")
    # Then Cedar's session-limit stops it before its second session (exit 3)
    assert done.returncode == 3, done.stderr
    result = json.loads(done.stdout)
    assert (result["outcome"], result["iterations"], result["sessions_used"]) == ("SESSION_LIMIT", 1, 1)
    assert (
        "session-limit" in result["stop_reason"]
        and "agent session 2 of a limit of 1" in result["stop_reason"]
    )
    # and a limit below what was used is refused, a higher one lets it resume to the end
    assert cli("limits", "capped", "-w", str(repo), "--max-sessions", "0").returncode == 2
    assert cli("limits", "capped", "-w", str(repo), "--max-sessions", "5").returncode == 0
    resumed = cli_json("resume", "capped", "-w", str(repo))
    assert (resumed["outcome"], resumed["features_completed"], resumed["sessions_used"]) == (
        "CONDITIONS_MET",
        3,
        3,
    )
