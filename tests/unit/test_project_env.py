"""The project's environment: which interpreter, what the child's environment holds, what the tests
import, env/cwd of conditions and a missing ``python -m`` tool (no venv is created here: fast)."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from loopwright.adapters.local.environment import build_environment, resolve_program
from loopwright.adapters.local.project_env import (
    InterpreterSource,
    ProjectEnvironment,
    check_python,
    detect_project_environment,
    editable_paths,
    find_interpreter,
    import_roots,
)
from loopwright.adapters.local.sandbox import SubprocessSandbox
from loopwright.conditions import evaluate_condition
from loopwright.conditions.parsers import parse_pytest
from loopwright.exceptions import ConfigError
from loopwright.models import (
    CommandResult,
    ExitConditionConfig,
    ExitConditionStatusValue,
    ExitConditionType,
    LoopConfig,
)


def _fake_venv(folder: Path) -> Path:
    """A folder that looks like a venv: ``pyvenv.cfg`` and ``bin/python`` (a link to this python)."""
    (folder / "bin").mkdir(parents=True)
    (folder / "pyvenv.cfg").write_text("home = /usr/bin\n")
    python = folder / "bin" / "python"
    python.symlink_to(sys.executable)
    return python


def _script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


# --- the interpreter -----------------------------------------------------------------------


def test_the_interpreter_is_found_in_order(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin"}
    # No venv: the first python3 on the user's PATH
    found, source, found_by = find_interpreter(tmp_path, env)
    assert (found, source, found_by) == (
        Path("/usr/bin/python3"),
        InterpreterSource.PATH,
        "first python3 on PATH",
    )
    # venv/ then .venv/ win over PATH, .venv first
    venv = _fake_venv(tmp_path / "venv")
    assert find_interpreter(tmp_path, env)[:2] == (venv, InterpreterSource.VENV)
    dot_venv = _fake_venv(tmp_path / ".venv")
    assert find_interpreter(tmp_path, env)[:2] == (dot_venv, InterpreterSource.VENV)
    # with uv.lock it is uv's; UV_PROJECT_ENVIRONMENT names another folder
    (tmp_path / "uv.lock").write_text("")
    assert find_interpreter(tmp_path, env)[:2] == (dot_venv, InterpreterSource.UV)
    other = _fake_venv(tmp_path / "envs" / "uv")
    assert find_interpreter(tmp_path, {**env, "UV_PROJECT_ENVIRONMENT": "envs/uv"})[0] == other
    # the config's python wins over everything
    assert find_interpreter(tmp_path, env, python="venv/bin/python")[:2] == (venv, InterpreterSource.CONFIG)


def test_a_folder_without_pyvenv_cfg_is_not_a_venv_and_nothing_found_says_why(tmp_path: Path) -> None:
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").symlink_to(sys.executable)
    (tmp_path / "uv.lock").write_text("")
    found, source, found_by = find_interpreter(tmp_path, {"PATH": str(tmp_path / "empty")})
    assert (found, source) == (None, InterpreterSource.NONE)
    assert "uv.lock found but no .venv: run `uv sync`" in found_by
    environment = detect_project_environment(tmp_path, tmp_path, {"PATH": str(tmp_path / "empty")})
    with pytest.raises(Exception, match=r"command not found: python \(no interpreter for the project"):
        resolve_program("python", cwd=tmp_path, path="", project=environment)


def test_poetry_and_hatch_are_asked_when_the_project_uses_them(tmp_path: Path) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    poetry_env = tmp_path / "cache" / "poetry-env"
    hatch_env = tmp_path / "cache" / "hatch-env"
    _fake_venv(poetry_env)
    _fake_venv(hatch_env)
    _script(tools / "poetry", f"#!/bin/sh\n[ \"$*\" = 'env info -p' ] && echo {poetry_env}\n")
    _script(tools / "hatch", f"#!/bin/sh\n[ \"$*\" = 'env find' ] && echo {hatch_env}\n")
    project = tmp_path / "project"
    project.mkdir()
    env = {"PATH": f"{tools}:/usr/bin:/bin"}
    (project / "pyproject.toml").write_text("[tool.hatch.envs.default]\n")
    assert find_interpreter(project, env)[:2] == (hatch_env / "bin" / "python", InterpreterSource.HATCH)
    (project / "poetry.lock").write_text("")
    found, source, found_by = find_interpreter(project, env)
    assert (found, source, found_by) == (
        poetry_env / "bin" / "python",
        InterpreterSource.POETRY,
        f"poetry env info -p: {poetry_env}",
    )


def test_a_python_setting_naming_nothing_is_refused_before_the_loop_is_written(tmp_path: Path) -> None:
    config = LoopConfig(goal="g", exit_conditions=[{"type": "ALL_TESTS_PASS"}], python="nope/bin/python")
    with pytest.raises(ConfigError, match=r"python: 'nope/bin/python' is not an executable file"):
        check_python(config, tmp_path)
    with pytest.raises(ConfigError, match="is not an executable file"):
        detect_project_environment(tmp_path, tmp_path, dict(os.environ), python=str(tmp_path))


def test_a_broken_venv_is_a_config_error(tmp_path: Path) -> None:
    _script(tmp_path / "broken", "#!/bin/sh\necho boom >&2\nexit 3\n")
    with pytest.raises(ConfigError, match=r"does not run \(exit code 3: boom\)"):
        detect_project_environment(tmp_path, tmp_path, {"PATH": "/usr/bin"}, python="broken")


def test_the_real_interpreter_is_recorded_and_a_venv_keeps_its_path(tmp_path: Path) -> None:
    # A venv's interpreter is named by its path in the venv (its real path would leave the venv)
    environment = detect_project_environment(tmp_path, tmp_path, dict(os.environ), python=sys.executable)
    assert environment.python == sys.executable
    assert environment.venv == (sys.prefix if sys.prefix != sys.base_prefix else None)
    assert environment.version == sys.version.split()[0]
    assert environment.describe().startswith(f"python {sys.executable} {environment.version} (python in the")


# --- the child's environment ---------------------------------------------------------------


def test_the_childs_environment_layers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:/usr/bin:/bin")
    monkeypatch.setenv("PYTHONPATH", "/user/lib")
    monkeypatch.setenv("PYTHONHOME", "/somewhere")
    monkeypatch.setenv("LOOPWRIGHT_POLICY_DIR", "/policies")
    project = ProjectEnvironment(
        python=str(tmp_path / "v" / "bin" / "python"),
        source=InterpreterSource.VENV,
        found_by="test",
        venv=str(tmp_path / "v"),
        import_roots=(str(tmp_path / "wt" / "src"),),
        env={"LOOP_ONLY": "1", "BOTH": "loop"},
    )
    env = build_environment({"BOTH": "condition"}, project)
    assert env["PATH"].split(os.pathsep)[0] == str(tmp_path / "v" / "bin")
    assert (
        str(Path(sys.executable).parent) not in env["PATH"].split(os.pathsep) or sys.prefix == sys.base_prefix
    )
    assert env["VIRTUAL_ENV"] == str(tmp_path / "v")
    assert "PYTHONHOME" not in env
    assert env["PYTHONPATH"] == os.pathsep.join([str(tmp_path / "wt" / "src"), "/user/lib"])
    assert (env["LOOP_ONLY"], env["BOTH"]) == ("1", "condition")  # the condition's env wins
    assert "LOOPWRIGHT_POLICY_DIR" not in env
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    # python is the project's interpreter; other names come from the child's PATH only
    assert resolve_program("python3", cwd=tmp_path, path=env["PATH"], project=project)[0] == project.python
    with pytest.raises(Exception, match=rf"not on the user's PATH, nor in {tmp_path / 'v'}/bin"):
        resolve_program("no-such-tool-xyz", cwd=tmp_path, path=env["PATH"], project=project)


# --- what the tests import -----------------------------------------------------------------


def test_editable_installs_pointing_at_the_checkout_are_redirected_to_the_worktree(tmp_path: Path) -> None:
    workspace, worktree, site = tmp_path / "ws", tmp_path / "ws" / ".loopwright" / "wt", tmp_path / "site"
    for folder in (
        workspace / "src" / "pkg",
        worktree / "src" / "pkg",
        workspace / "lib",
        worktree / "lib",
        site,
    ):
        folder.mkdir(parents=True)
    (worktree / "flat").mkdir()
    (site / "__editable__.pkg-1.0.pth").write_text(f"{workspace / 'src'}\n")
    (site / "distutils-precedence.pth").write_text("import os; x = 1\n# a comment\n")
    (site / "__editable___flat_1_0_finder.py").write_text(
        f"import sys\nMAPPING: dict[str, str] = {{'flat': {str(workspace / 'flat')!r}}}\n"
    )
    (site / "legacy.egg-link").write_text(f"{workspace / 'lib'}\n.\n")
    (site / "other.pth").write_text("/usr/share/elsewhere\n")
    assert editable_paths([str(site)]) == [
        workspace / "src",
        workspace,
        workspace / "lib",
        Path("/usr/share/elsewhere"),
    ]

    roots, redirected = import_roots(workspace, worktree, [str(site)], state_dir=workspace / ".loopwright")
    assert roots == [worktree.resolve() / "src", worktree.resolve(), worktree.resolve() / "lib"]
    assert redirected == [workspace.resolve() / "src", workspace.resolve(), workspace.resolve() / "lib"]
    # the worktree being the workspace itself (no git isolation): nothing to redirect
    assert import_roots(workspace, workspace, [str(site)]) == ([], [])


def test_a_src_layout_without_an_editable_install_imports_the_worktrees_src(tmp_path: Path) -> None:
    workspace, worktree = tmp_path / "ws", tmp_path / "wt"
    (worktree / "src" / "pkg").mkdir(parents=True)
    workspace.mkdir()
    assert import_roots(workspace, worktree, []) == ([], [])  # not a Python project
    (worktree / "pyproject.toml").write_text("[project]\nname = 'pkg'\n")
    assert import_roots(workspace, worktree, []) == ([], [])  # src holds no code yet
    (worktree / "src" / "pkg" / "__init__.py").write_text("")
    assert import_roots(workspace, worktree, []) == ([worktree.resolve() / "src"], [])


# --- conditions: env, cwd, a missing tool ---------------------------------------------------


def test_a_condition_runs_in_its_cwd_with_its_env(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    cfg = ExitConditionConfig(
        type=ExitConditionType.CUSTOM,
        command=["sh", "-c", 'pwd; echo "$GREETING"'],
        cwd="sub",
        env={"GREETING": "hello there"},
    )
    status = evaluate_condition(cfg, SubprocessSandbox(), tmp_path, iteration=1)
    assert status.status is ExitConditionStatusValue.MET
    assert status.stdout.split("\n")[:2] == [str(tmp_path / "sub"), "hello there"]


def test_a_cwd_that_is_missing_or_leads_outside_is_an_error(tmp_path: Path) -> None:
    worktree = tmp_path / "wt"
    worktree.mkdir()
    (worktree / "out").symlink_to(tmp_path)
    for cwd, reason in [
        ("missing", "is not a folder in the worktree"),
        ("out", "leads outside the worktree"),
    ]:
        cfg = ExitConditionConfig(type=ExitConditionType.CUSTOM, command=["true"], cwd=cwd)
        status = evaluate_condition(cfg, SubprocessSandbox(), worktree, iteration=1)
        assert status.status is ExitConditionStatusValue.ERROR
        assert status.summary.startswith(f"could not run: cwd {cwd!r} {reason}")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("cwd", "/abs", "must be a folder relative to the worktree without '..'"),
        ("cwd", "a/../../b", "must be a folder relative to the worktree without '..'"),
        ("env", {"1A": "x"}, "is not a variable name"),
        ("env", {"LOOPWRIGHT_POLICY_DIR": "x"}, "are loopwright's own"),
        ("env", {"A": "a\x00b"}, "cannot contain a NUL character"),
    ],
)
def test_bad_env_and_cwd_are_refused_naming_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        ExitConditionConfig(type=ExitConditionType.ALL_TESTS_PASS, **{field: value})
    assert caught.value.errors()[0]["loc"][0] == field
    if field == "env":
        with pytest.raises(ValidationError, match=message):
            LoopConfig(goal="g", exit_conditions=[{"type": "ALL_TESTS_PASS"}], env=value)


def _ran(command: list[str], stderr: str, exit_code: int = 1) -> CommandResult:
    return CommandResult(command=command, exit_code=exit_code, stderr=stderr)


def test_a_missing_python_m_tool_is_an_error_not_a_failure() -> None:
    missing = parse_pytest(
        _ran(["python", "-m", "pytest", "-q"], "/p/.venv/bin/python: No module named pytest\n")
    )
    assert missing.status is ExitConditionStatusValue.ERROR
    assert missing.summary.startswith(
        "pytest is not installed in the project's environment (/p/.venv/bin/python)"
    )
    dotted = parse_pytest(
        _ran(
            ["python", "-m", "tool.sub"],
            "/usr/bin/python3: Error while finding module specification for 'tool.sub' "
            "(ModuleNotFoundError: No module named 'tool')\n",
        )
    )
    assert dotted.status is ExitConditionStatusValue.ERROR
    assert dotted.details["missing_module"] == "tool"
    # A dependency the checked code fails to import is the code's failure, not a missing tool
    dependency = parse_pytest(
        _ran(
            ["python", "-m", "pkg.check"],
            "/usr/bin/python3: Error while finding module specification for 'pkg.check' "
            "(ModuleNotFoundError: No module named 'requests')\n",
        )
    )
    assert dependency.status is ExitConditionStatusValue.NOT_MET
    # Another module's name, or another exit code, is not it either
    other = parse_pytest(_ran(["python", "-m", "pytest"], "/p/python: No module named pytest_cov\n"))
    assert other.status is ExitConditionStatusValue.NOT_MET
    crashed = parse_pytest(
        _ran(["python", "-m", "pytest"], "/p/python: No module named pytest\n", exit_code=2)
    )
    assert crashed.status is ExitConditionStatusValue.NOT_MET


def test_an_interpreter_is_probed_once_while_its_file_stays_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A loop's start looks the environment up for preflight and again for its sandbox: one probe
    import subprocess

    from loopwright.adapters.local import project_env

    python = tmp_path / "python3"
    python.symlink_to(sys.executable)
    runs: list[list[str]] = []
    real_run = subprocess.run

    def counting(argv: list[str], **kwargs: Any) -> Any:
        runs.append(argv)
        return real_run(argv, **kwargs)

    monkeypatch.setattr(project_env.subprocess, "run", counting)
    first = project_env.probe(str(python), {})
    assert project_env.probe(str(python), {"PATH": "/elsewhere"}) == first and len(runs) == 1
    # The same path made another file (a venv recreated): probed again
    python.unlink()
    python.symlink_to(sys.executable)
    os.utime(python, ns=(1, 1), follow_symlinks=False)
    project_env.probe(str(python), {})
    assert len(runs) == 2
