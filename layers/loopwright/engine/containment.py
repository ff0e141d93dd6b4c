"""What the in-process engine does so that everything a loop starts stays the loop's, and dies
with the run that started it (issue 11; the mechanism is in :mod:`loopwright.adapters.local.processes`
and :mod:`loopwright.adapters.local.sandbox`).

When a run takes a loop (after its lock, before the worktree is touched), :func:`contain` ends
whatever a previous run of the loop left alive (an agent that outlived a ``kill -9`` of
loopwright, its helpers) and records it as PROCESSES_ENDED, then binds the sandbox to the loop:
every command it runs is recorded in the loop's process ledger, carries the loop's marker, and
runs under a supervisor that ends its whole process tree when the command ends or loopwright
dies; with ``isolation = "bubblewrap"``, inside bubblewrap; and in the project's environment
(its interpreter and venv, the worktree first on ``PYTHONPATH``, the loop's ``env``: see
:mod:`loopwright.adapters.local.project_env`), which :func:`contain` returns for the engine to record.
"""

from __future__ import annotations

from pathlib import Path

from loopwright.adapters.local.environment import user_environment
from loopwright.adapters.local.isolation import isolation_for
from loopwright.adapters.local.processes import ProcessLedger
from loopwright.adapters.local.project_env import ProjectEnvironment, detect_project_environment
from loopwright.adapters.local.sandbox import SubprocessSandbox
from loopwright.exceptions import ConfigError
from loopwright.models import IterationEventType, LoopConfig, LoopState
from loopwright.ports import Agent, Sandbox
from loopwright.preflight import preflight
from loopwright.workflow import Recorder

#: Processes listed in a PROCESSES_ENDED event (all are ended).
MAX_LISTED_PROCESSES = 20


def contain(
    state: LoopState,
    *,
    agent: Agent,
    sandbox: Sandbox,
    workspace: Path,
    state_dir: Path,
    record: Recorder,
) -> ProjectEnvironment | None:
    """End a previous run's leftovers and bind ``sandbox`` to the loop of ``state`` (see the
    module docstring). Call it holding the loop's lock: without it, the leftovers could be the
    processes of a run another process is making now. Returns the project's environment the
    sandbox got (None for a sandbox other than the local one).

    Raises :class:`ConfigError` when the loop asks for isolation that cannot be given (a python
    agent, which runs inside loopwright's process, or a sandbox other than the local one) or
    when its ``python`` setting names no interpreter.
    """
    isolated = state.config.isolation != "none"
    if isolated and agent.in_process:
        raise ConfigError(
            "isolation: a python agent runs inside loopwright's process and cannot be isolated; "
            'give the agent as a command or set isolation = "none"'
        )
    if not isinstance(sandbox, SubprocessSandbox):
        if isolated:
            raise ConfigError("isolation: only the local subprocess sandbox can isolate commands")
        return None
    environment = detect_project_environment(
        workspace,
        Path(state.worktree),
        user_environment(),
        python=state.config.python,
        env=state.config.env,
        state_dir=state_dir,
    )
    ledger = ProcessLedger(state_dir, state.loop_id)
    ended = ledger.end_leftovers()
    if ended:
        shown = "; ".join(f"{p.pid} {p.command}" for p in ended[:MAX_LISTED_PROCESSES])
        record(
            IterationEventType.PROCESSES_ENDED,
            f"{len(ended)} process(es) of a previous run were still alive and were ended: {shown}",
            pids=[p.pid for p in ended],
            commands=[p.command for p in ended[:MAX_LISTED_PROCESSES]],
        )
    isolation = isolation_for(
        state.config,
        workspace=workspace,
        state_dir=state_dir,
        loop_id=state.loop_id,
        worktree=Path(state.worktree),
    )
    sandbox.attach(ledger, isolation=isolation, environment=environment)
    return environment


def release(sandbox: Sandbox) -> None:
    """Unbind the sandbox from the loop at the end of a run."""
    if isinstance(sandbox, SubprocessSandbox):
        sandbox.detach()


def check_programs(
    config: LoopConfig,
    agent: Agent | None,
    sandbox: Sandbox,
    *,
    workspace: Path,
    cwd: Path,
    state_dir: Path,
) -> None:
    """Preflight (:func:`loopwright.preflight.preflight`) with the programs looked up the way the
    loop will run them: a local sandbox gets the project's environment first (its venv's
    ``bin`` on ``PATH``, its ``python``), so a tool installed only in the project's ``.venv`` is
    found. ``cwd`` is where relative programs are looked up (the worktree, or the workspace
    before the loop exists). Raises :class:`~loopwright.preflight.PreflightError`."""
    if isinstance(sandbox, SubprocessSandbox):
        environment = detect_project_environment(
            workspace, cwd, user_environment(), python=config.python, env=config.env, state_dir=state_dir
        )
        sandbox = SubprocessSandbox(environment=environment)
    preflight(config, agent, sandbox, cwd=cwd)
