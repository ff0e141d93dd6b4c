"""Human controls of local loops (the CLI's ``pause``/``stop``/``approve``/``limits``).

The local user (who owns the state folder) acts as ``User::"<OS user>"`` in the project's
operators group, so the Cedar policies of ``policies/controls.cedar`` allow it unless a policy
added later forbids it. Whether a loop runs is told by its lock file (a killed process holds no
lock), not by the stored ``is_active``.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path

from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.adapters.local.command_agent import LOOP_ID_ENV
from loopwright.adapters.local.processes import owning_loop
from loopwright.controls import ControlService, Resumer
from loopwright.engine.local import build_workspace
from loopwright.engine.lock import LoopLock
from loopwright.models import LoopState, operators_group
from loopwright.models.types import is_loop_id
from loopwright.ports import CheckpointStore, LoopStore, PolicyEngine, Workspace
from loopwright.steps.authorize import loop_principal
from loopwright.travel import TimeTravel


@dataclass(frozen=True)
class LocalCaller:
    """Who a local command acts as: the OS user (an operator of every project in this workspace,
    since they own its state folder), or, inside a loop's processes, that loop's agent
    (``agent_of``), which Cedar never lets raise its limits, approve its gate or control loops."""

    principal: str
    agent_of: str | None = None

    def groups(self, project: str) -> list[str]:
        """The Cedar groups of the caller for a loop of ``project``."""
        return [] if self.agent_of is not None else [operators_group(project)]


def local_caller(state_dir: Path) -> LocalCaller:
    """The caller of a CLI command on ``state_dir``: ``Agent::"<loop>"`` when this process carries
    a loop's id in :data:`LOOP_ID_ENV` (any loop's: it acts for an agent), or when it or one of
    its ancestors is a process a loop of ``state_dir`` started
    (:func:`~loopwright.adapters.local.processes.owning_loop`: its marker, its ledger, its process
    group); else the local user."""
    loop_id = os.environ.get(LOOP_ID_ENV, "").strip() or owning_loop(state_dir) or ""
    if loop_id:
        shown = loop_id if is_loop_id(loop_id) else "unknown-loop"  # never a crafted Cedar uid
        return LocalCaller(loop_principal(shown), agent_of=shown)
    return LocalCaller(local_user())


def local_user() -> str:
    """The Cedar uid of the local OS user: ``User::"<login name>"``."""
    name = getpass.getuser().replace('"', "").replace("\\", "") or "local"
    return f'User::"{name}"'


def lock_is_held(state_dir: Path, state: LoopState) -> bool:
    """True when a process holds the loop's lock in ``state_dir`` (it is running now)."""
    return LoopLock(state_dir, state.loop_id).holder() is not None


def local_control_service(
    state_dir: Path,
    store: LoopStore,
    *,
    resumer: Resumer | None = None,
    policy: PolicyEngine | None = None,
) -> ControlService:
    """A :class:`ControlService` over the local store, Cedar via cedarpy (``policies/``); time
    travel (rollback, fork) in the loops' git worktrees when the store keeps checkpoints."""

    def workspace_for(state: LoopState) -> Workspace:
        root = Path(state.workspace) if state.workspace else state_dir.parent
        return build_workspace(state.config, root, state_dir)

    travel = TimeTravel(store, store, workspace_for) if isinstance(store, CheckpointStore) else None
    return ControlService(
        store,
        policy or CedarPolicyEngine(),
        resumer,
        is_running=lambda state: lock_is_held(state_dir, state),
        travel=travel,
    )
