"""Which Cedar policy set a local loop runs under, and who may change it (issue 11).

A loop records the policy files it starts under (name -> SHA-256, ``LoopState.policy_files``,
also in its LOOP_STARTED event). When it is resumed, the files are read again: a loop whose
policies changed in between runs only when an operator accepts the change, which is recorded
(POLICY_SET_CHANGED: who, which files, both digests). An agent that edits the policies on disk
(it runs as the same OS user) therefore cannot relax the rules of the loop it runs in: the
engine reads the policies once per run, and the next run refuses the edit.

Policies are never read from where the agent works: a policy folder inside loopwright's state
folder (worktrees, the agent's files) is refused.
"""

from __future__ import annotations

from pathlib import Path

from loopwright.controls import policy_files_changed
from loopwright.exceptions import ConfigError, PolicySetChangedError
from loopwright.models import IterationEventType, LoopState
from loopwright.ports import PolicyEngine
from loopwright.workflow import Recorder


def check_policy_location(policy: PolicyEngine, state_dir: Path) -> None:
    """Raise :class:`ConfigError` when ``policy`` reads its files from inside ``state_dir`` (where
    the loops' worktrees and the agents' files are, all writable by agents)."""
    folder = getattr(policy, "policy_dir", None)
    if isinstance(folder, Path) and folder.resolve().is_relative_to(state_dir.resolve()):
        raise ConfigError(
            f"the Cedar policy folder {folder} is inside loopwright's state folder {state_dir}, "
            "where agents write; keep policies elsewhere (LOOPWRIGHT_POLICY_DIR)"
        )


def check_policy_set(
    state: LoopState, policy: PolicyEngine, record: Recorder, *, accepted_by: str | None = None
) -> None:
    """Record the policy set of a loop's first session; on a resume, compare it with the one read
    now and refuse a change unless ``accepted_by`` (an operator, authorized by the caller) accepts
    it, which is recorded as POLICY_SET_CHANGED and becomes the loop's policy set.

    Raises :class:`PolicySetChangedError` naming the changed files and how to accept them.
    """
    files = policy.policy_files()
    if files is None:
        return
    if state.policy_files is None:
        state.policy_files = files
        return
    changed = policy_files_changed(state.policy_files, files)
    if not changed:
        return
    if accepted_by is None:
        raise PolicySetChangedError(
            f"the Cedar policies changed since loop {state.loop_id!r} last ran ({', '.join(changed)}); "
            "it continues only if an operator accepts the new set: "
            f"`loopwright resume {state.loop_id} --accept-policy-change`"
        )
    record(
        IterationEventType.POLICY_SET_CHANGED,
        f"{accepted_by} accepted a changed Cedar policy set: {', '.join(changed)}",
        principal=accepted_by,
        changed=changed,
        before=state.policy_files,
        after=files,
    )
    state.policy_files = files
