"""Plans' git work in a Code Interpreter session: a dependent task's start and gate:all's merge.

On AWS each task's loop works on a clone in its own Code Interpreter session and pushes its branch
``loopwright/<plan_id>.<task_id>`` to the repository (``repository.push``: required for a plan's
tasks, since their sessions end and their results must reach the tasks after them and the
verification). :class:`SessionPlanWorkspace` extends the loop's
:class:`~loopwright.adapters.aws.session_workspace.SessionWorkspace` (same clone, same git options
and identity, every command run through the session's sandbox):

- :meth:`SessionPlanWorkspace.prepare_task` (StartTask of a task with dependencies): clone, merge
  the dependencies' head commits, push the result as the task's branch; the task's loop, in its
  own session, then continues that pushed branch.
- :meth:`SessionPlanWorkspace.integrate` (verify): the branch ``loopwright/verify_<plan_id>`` at the
  merge of the tasks' results in the session, where the gates then run (the same session's
  :class:`~loopwright.adapters.aws.code_interpreter_sandbox.CodeInterpreterSandbox`).

Merges are ``git merge --no-ff`` of each head in turn into the first; a conflict aborts the merge
and raises :class:`~loopwright.plans.errors.MergeConflictError` naming the paths.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from loopwright.adapters.aws.session_workspace import DEFAULT_ROOT, SessionWorkspace
from loopwright.adapters.local.git_workspace import BRANCH_PREFIX
from loopwright.exceptions import ConfigError, WorkspaceError
from loopwright.models import RepositoryConfig
from loopwright.models.plans import Plan
from loopwright.plans.errors import MergeConflictError
from loopwright.plans.ports import PlanWorkspace
from loopwright.ports import Sandbox

#: Folder of the session holding the plans' clones (beside the loops' clones).
PLANS_ROOT = DEFAULT_ROOT.parent / "plans"
#: Identity of the merge commits.
_IDENTITY = ("-c", "user.name=loopwright", "-c", "user.email=loopwright@localhost")


class SessionPlanWorkspace(SessionWorkspace, PlanWorkspace):
    """Merges of tasks' results in a session's clone (see the module docstring).

    Args as :class:`SessionWorkspace`. Methods raise :class:`WorkspaceError` naming the git
    command when git fails, :class:`MergeConflictError` when heads conflict.
    """

    def __init__(
        self, sandbox: Sandbox, repository: RepositoryConfig, *, root: PurePosixPath = PLANS_ROOT
    ) -> None:
        super().__init__(sandbox, repository, root=root)

    def prepare_task(self, loop_id: str, heads: Sequence[str]) -> dict[str, Any]:
        """Push the branch ``loopwright/<loop_id>`` at the merge of ``heads`` (nothing when the
        remote has it already: a restarted task keeps its work). Returns no LoopState field:
        the task's loop clones the pushed branch in its own session. Raises ConfigError without
        ``repository.push``."""
        if not heads:
            return {}
        if not self.repository.push:
            raise ConfigError(
                "repository.push: must be true for a plan's tasks on AWS (each task's result must be "
                "pushed for the tasks after it and for verification); set push = true in the plan's "
                "defaults.repository"
            )
        branch = BRANCH_PREFIX + loop_id
        code, out, err = self._run(
            ["ls-remote", "--heads", "--", self.repository.url, f"refs/heads/{branch}"], None
        )
        if code != 0:
            raise WorkspaceError(f"`git ls-remote {self.repository.url}` failed: {err.strip()[-500:]}")
        if out.strip():
            return {}  # pushed already (the merge is pushed last, in one step): keep it
        path = self.path(loop_id)
        self._git(["rm", "-rf", "--", str(path)], program="rm")
        self._git(["clone", "-q", "--", self.repository.url, str(path)])
        self._merge(path, heads)
        self._git(["push", "-q", "origin", f"HEAD:refs/heads/{branch}"], cwd=path)
        return {}

    def integrate(self, run_id: str, heads: Sequence[str], *, isolated: bool = True) -> Path:
        """The clone of branch ``loopwright/<run_id>`` at the merge of ``heads`` (the repository's
        ``ref`` when empty), pushed when ``repository.push``. ``isolated`` is ignored: on AWS the
        tasks' results are always on their own branches."""
        folder, branch, _ = self.prepare(run_id)
        path = PurePosixPath(folder)
        if heads:
            self._merge(path, heads)
            if self.repository.push:
                self._git(["push", "-q", "--force", "origin", f"HEAD:refs/heads/{branch}"], cwd=path)
        return folder

    def changed_files(self, base: str | None, head: str | None) -> list[str]:
        """Paths changed from ``base`` to ``head`` in a clone of the repository (empty when either
        is None or they are equal)."""
        if not base or not head or base == head:
            return []
        path = self.root / "changes"
        if self._rev(path, "HEAD") is None:
            self._git(["rm", "-rf", "--", str(path)], program="rm")
            self._git(["clone", "-q", "--no-checkout", "--", self.repository.url, str(path)])
        out = self._git(["diff", "--name-only", "-z", base, head], cwd=path)
        return [name for name in out.split("\0") if name]

    def _merge(self, path: PurePosixPath, heads: Sequence[str]) -> None:
        """Reset the clone's branch to the first head and merge the others into it."""
        self._git(["reset", "-q", "--hard", heads[0]], cwd=path)
        for head in heads[1:]:
            code, out, err = self._run([*_IDENTITY, "merge", "-q", "--no-edit", "--no-ff", head], path)
            if code == 0:
                continue
            conflicts = self._git(["diff", "--name-only", "-z", "--diff-filter=U"], cwd=path)
            paths = sorted(name for name in conflicts.split("\0") if name)
            self._run(["merge", "--abort"], path)
            if paths:
                raise MergeConflictError(
                    f"the changes of commits {heads[0][:12]}... and {head[:12]} conflict in "
                    + ", ".join(paths),
                    paths=paths,
                )
            raise WorkspaceError(f"`git merge {head}` failed in {path}: {(err or out).strip()[-500:]}")


def plan_repository(plan: Plan, repository: str | None = None) -> RepositoryConfig:
    """The repository of a plan's tasks: ``defaults.repository``, else ``repository`` (a URL).
    Raises ConfigError naming the field when there is none."""
    configured = plan.defaults.get("repository")
    if configured is not None:
        return RepositoryConfig.model_validate(configured)
    if repository:
        return RepositoryConfig(url=repository, push=True)
    raise ConfigError(
        "defaults.repository: a plan verified on AWS needs its repository "
        '(for example [defaults.repository] url = "https://github.com/owner/repo.git", push = true)'
    )


class SessionTaskBranches:
    """:class:`~loopwright.cloud.plan_steps.TaskBranches` on AWS: each :meth:`prepare_task` in a
    Code Interpreter session of its own, stopped afterwards."""

    def __init__(self, repository: RepositoryConfig, *, region_name: str, identifier: str) -> None:
        self.repository = repository
        self.region_name = region_name
        self.identifier = identifier

    def prepare_task(self, loop_id: str, heads: Sequence[str]) -> dict[str, Any]:
        """See :meth:`SessionPlanWorkspace.prepare_task`."""
        if not heads:
            return {}
        with self._session() as workspace:
            return workspace.prepare_task(loop_id, heads)

    @contextlib.contextmanager
    def _session(self) -> Iterator[SessionPlanWorkspace]:
        from loopwright.adapters.aws.code_interpreter_sandbox import CodeInterpreterSandbox

        with CodeInterpreterSandbox(self.region_name, identifier=self.identifier) as sandbox:
            yield SessionPlanWorkspace(sandbox, self.repository)


def session_task_branches(
    repository: RepositoryConfig, *, region_name: str, identifier: str
) -> SessionTaskBranches:
    """The AWS task branches over ``repository`` (see :class:`SessionTaskBranches`)."""
    return SessionTaskBranches(repository, region_name=region_name, identifier=identifier)


@contextlib.contextmanager
def session_gates(
    plan: Plan, *, region_name: str, identifier: str, repository: str | None = None
) -> Iterator[tuple[Sandbox, PlanWorkspace]]:
    """The sandbox and workspace gate:all runs in on AWS: a Code Interpreter session of its own
    (stopped afterwards) and the merge of the tasks' results in it. For
    :class:`~loopwright.adapters.aws.step_functions_plans.StepFunctionsPlanExecutor`'s ``gates``."""
    from loopwright.adapters.aws.code_interpreter_sandbox import CodeInterpreterSandbox

    with CodeInterpreterSandbox(region_name, identifier=identifier) as sandbox:
        yield sandbox, SessionPlanWorkspace(sandbox, plan_repository(plan, repository))
