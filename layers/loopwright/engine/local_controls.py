"""Human controls of local loops (the CLI's ``pause``/``stop``/``approve``/``limits``).

The local user (who owns the state folder) acts as ``User::"<OS user>"`` in the project's
operators group, so the Cedar policies of ``policies/controls.cedar`` allow it unless a policy
added later forbids it. Whether a loop runs is told by its lock file (a killed process holds no
lock), not by the stored ``is_active``.
"""

from __future__ import annotations

import getpass
from pathlib import Path

from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.controls import ControlService, Resumer
from loopwright.engine.lock import LoopLock
from loopwright.models import LoopState
from loopwright.ports import LoopStore, PolicyEngine


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
    """A :class:`ControlService` over the local store, Cedar via cedarpy (``policies/``)."""
    return ControlService(
        store,
        policy or CedarPolicyEngine(),
        resumer,
        is_running=lambda state: lock_is_held(state_dir, state),
    )
