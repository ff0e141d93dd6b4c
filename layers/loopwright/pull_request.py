"""A pull request for a loop that met its exit conditions (issue 15, part 4): its title and body,
made from what the loop recorded, never from what the agent says.

:func:`pull_request_problem` says why a loop cannot be proposed (not ended, ended without meeting
its conditions, no branch, nothing changed); :func:`compose_pull_request` writes the request:
the goal, each exit condition before (the baseline evaluation, iteration 0) and after (the last
evaluation), the iterations, tokens, cost and duration, the commits, and the evidence bundle.

The evidence bundle (issue 15, part 2) is built elsewhere; its hook here is
:class:`EvidenceLink`: whoever has a bundle for the loop passes one and the body links it (with
its SHA-256 and the command that verifies it); without one the body says there is none. Pure
functions over the models: no git, no network (those are :mod:`loopwright.adapters.local.pull_request`).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from loopwright.models.enums import IterationEventType, LoopOutcome
from loopwright.models.state import IterationEvent, LoopState

#: Characters of the goal's first line kept in the title (GitHub shows about 70 in lists).
MAX_TITLE_GOAL_CHARS = 72
#: Characters of a condition's summary kept in the body's table.
MAX_SUMMARY_CHARS = 120
#: Characters of a signed bundle attached to the body itself (GitHub's limit on a pull request's
#: body is 65,536 characters; a bigger bundle is linked only).
MAX_ATTACHED_EVIDENCE_CHARS = 50_000


class EvidenceLink(BaseModel):
    """The hook for the loop's evidence bundle: where it is and how to check it.

    ``location``: a URL or a path (relative to the repository, or absolute); ``sha256``: the
    bundle's SHA-256 hex digest, if known; ``verify_command``: the command a reviewer runs to
    verify it (for example ``loopwright evidence verify <bundle>``), if any; ``content``: the signed
    bundle itself (JSON), attached to the body, when it is at most
    :data:`MAX_ATTACHED_EVIDENCE_CHARS` characters.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    location: str = Field(min_length=1, max_length=4096)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    verify_command: str | None = Field(default=None, min_length=1, max_length=4096)
    content: str | None = Field(default=None, max_length=MAX_ATTACHED_EVIDENCE_CHARS)


class PullRequestDraft(BaseModel):
    """What ``loopwright pr`` proposes: merge ``branch`` (at ``head_commit``) into ``base``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    loop_id: str
    branch: str = Field(min_length=1, description="the loop's branch, loopwright/<loop_id>")
    head_commit: str = Field(min_length=1, description="the commit whose evaluation met the conditions")
    base: str = Field(min_length=1, description="the branch the pull request goes into")
    title: str = Field(min_length=1)
    body: str = Field(min_length=1, description="GitHub-flavoured Markdown")


def pull_request_problem(state: LoopState) -> str | None:
    """Why the loop cannot be proposed as a pull request (one line naming what to do), or None.

    A loop qualifies when it ended with CONDITIONS_MET, has a branch and a head commit (it ran
    with ``git_isolation``), and its head is not its base (the agent changed something).
    """
    if state.outcome is not LoopOutcome.CONDITIONS_MET:
        shown = state.outcome.value if state.outcome else f"not ended ({state.phase.value})"
        return (
            f"loop {state.loop_id!r} did not meet its exit conditions ({shown}); only a loop that "
            "ended with CONDITIONS_MET can be proposed (resume it first)"
        )
    if not state.branch or not state.head_commit:
        return (
            f"loop {state.loop_id!r} has no branch (it ran with git_isolation = false): there is "
            "nothing to push; its changes are in the workspace itself"
        )
    if state.iteration == 0 or state.head_commit == state.base_commit:
        return (
            f"loop {state.loop_id!r} changed nothing: the repository met its exit conditions "
            "before the agent ran (0 iterations)"
        )
    return None


def baseline_statuses(events: Sequence[IterationEvent]) -> dict[str, tuple[str, str]]:
    """The baseline evaluation's conditions, name -> (status, summary): the last
    EXIT_CONDITIONS_EVALUATED event with ``baseline: true`` (a baseline evaluated again after a
    resume replaces the first); empty when none was recorded (Step Functions runs none)."""
    found: dict[str, tuple[str, str]] = {}
    for event in events:
        if event.type is IterationEventType.EXIT_CONDITIONS_EVALUATED and event.data.get("baseline") is True:
            statuses = event.data.get("statuses") or {}
            summaries = event.data.get("summaries") or {}
            found = {
                str(name): (str(status), str(summaries.get(name, ""))) for name, status in statuses.items()
            }
    return found


def _cell(text: str) -> str:
    """``text`` fit for one Markdown table cell: one line, ``|`` escaped, bounded."""
    line = " ".join(text.split()).replace("|", "\\|")
    return line if len(line) <= MAX_SUMMARY_CHARS else line[: MAX_SUMMARY_CHARS - 1] + "…"


def pull_request_title(goal: str) -> str:
    """``loopwright: <the goal's first line>``, the line cut to :data:`MAX_TITLE_GOAL_CHARS`."""
    first = next((line.strip() for line in goal.splitlines() if line.strip()), "the loop's goal")
    if len(first) > MAX_TITLE_GOAL_CHARS:
        first = first[: MAX_TITLE_GOAL_CHARS - 1] + "…"
    return f"loopwright: {first}"


def compose_pull_request(
    state: LoopState,
    events: Sequence[IterationEvent],
    *,
    base: str,
    evidence: EvidenceLink | None = None,
) -> PullRequestDraft:
    """The pull request of a loop that qualifies (:func:`pull_request_problem` is None).

    Args:
        state: the loop's stored state (its conditions are the last evaluation's).
        events: its recorded events, oldest first (the baseline is read from them).
        base: the branch the request goes into.
        evidence: the loop's evidence bundle, when one exists (the hook of issue 15, part 2).

    Raises:
        ValueError: the loop does not qualify (the message is :func:`pull_request_problem`'s).
    """
    problem = pull_request_problem(state)
    if problem is not None:
        raise ValueError(problem)
    assert state.branch is not None and state.head_commit is not None  # checked above
    before = baseline_statuses(events)
    lines = [
        f"Opened by `loopwright pr` for loop `{state.loop_id}`: the agent worked on branch "
        f"`{state.branch}` until every required exit condition held, each evaluated by loopwright "
        "outside the agent.",
        "",
        "## Goal",
        "",
        *(f"> {line}" if line else ">" for line in state.config.goal.strip().splitlines()),
        "",
        "## Exit conditions",
        "",
        "| condition | type | before (baseline) | after | after: summary |",
        "| --- | --- | --- | --- | --- |",
    ]
    for condition in state.exit_conditions:
        was = before.get(condition.name)
        shown_before = f"{was[0]}: {was[1]}" if was and was[1] else (was[0] if was else "not recorded")
        optional = "" if condition.required else " (optional)"
        lines.append(
            f"| {_cell(condition.name)}{optional} | {condition.type.value} | {_cell(shown_before)} "
            f"| {condition.status.value} | {_cell(condition.summary)} |"
        )
    cost = f"${state.cost_usd:.4f}" + (
        f" (no price for {', '.join(state.unpriced_models)})" if state.unpriced_models else ""
    )
    lines += [
        "",
        "## Run",
        "",
        f"- iterations: {state.iteration} (limit {state.config.max_iterations})",
        f"- tokens: {state.tokens_used}",
        f"- cost: {cost} (US dollars)",
        f"- duration: {round(state.elapsed_seconds)} s wall clock, {state.sessions_used} run(s), "
        f"{state.agent_sessions} agent session(s)",
        f"- outcome: {LoopOutcome.CONDITIONS_MET.value}: "
        + (state.outcome_reason or "all required conditions met"),
        f"- commits: `{(state.base_commit or '?')[:12]}..{state.head_commit[:12]}` "
        f"(head `{state.head_commit}`)",
        "",
        "## Evidence",
        "",
    ]
    if evidence is None:
        lines.append(
            "No evidence bundle is attached to this loop. The conditions above are loopwright's "
            "own records (`loopwright events "
            f"{state.loop_id} --type EXIT_CONDITIONS_EVALUATED`)."
        )
    else:
        lines.append(f"- bundle: {evidence.location}")
        if evidence.sha256:
            lines.append(f"- SHA-256: `{evidence.sha256}`")
        if evidence.verify_command:
            lines.append(f"- verify: `{evidence.verify_command}`")
        if evidence.content is not None:
            lines += [
                "",
                "The signed bundle: save it as `evidence.json` and, in a checkout of this branch, run "
                "`loopwright evidence verify evidence.json --public-key SIGNER.pem` with the signer's "
                "public key (`loopwright evidence public-key`).",
                "",
                "<details><summary>evidence.json</summary>",
                "",
                "```json",
                evidence.content.rstrip("\n"),
                "```",
                "",
                "</details>",
            ]
    return PullRequestDraft(
        loop_id=state.loop_id,
        branch=state.branch,
        head_commit=state.head_commit,
        base=base,
        title=pull_request_title(state.config.goal),
        body="\n".join(lines) + "\n",
    )
