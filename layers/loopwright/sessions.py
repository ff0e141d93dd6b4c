"""Agent sessions and handoff (issue 10.3, seed 002 "Check context limits", "Prepare handoff").

An agent whose backend has sessions (:attr:`loopwright.ports.Agent.supports_sessions`: Claude
Code ``--resume``, Codex ``exec resume``) continues the same session across iterations while it
fits. After each iteration (:func:`account_session`) the loop decides whether the next one needs
a fresh session, and why (``LoopState.pending_handoff``):

* the session's context use the agent reported (``AgentResult.context_percent``) reached
  ``LoopConfig.handoff_context_percent``;
* the session ran ``LoopConfig.session_max_iterations`` iterations;
* the agent asked for one (``report.json``: ``"handoff": "why"``);
* the session's last run crashed, timed out or went idle (it may be unusable); a rate limit, an
  outage, a usage limit or an authentication error keep the session.

An agent that reported no session id has nothing to resume: its next run is fresh, without a
handoff summary.

Before the next iteration (:func:`open_session`) a pending handoff is recorded as a
SESSION_HANDOFF event, ``LoopState.handoff_reason`` keeps its reason, and the agent's request
carries no ``session_id`` and a handoff summary (:func:`handoff_summary`: the reason, the loop's
recent iterations from ``LoopState.session_history``, the agent's progress notes: the loop's
``progress.md`` notes, else a ``PROGRESS.md`` it keeps in the worktree).
``LoopState.agent_sessions`` counts the sessions started (``LoopResult.sessions_used``); the
Cedar policy ``session-limit`` refuses an iteration that would start a session past
``LoopConfig.max_sessions`` (:mod:`loopwright.steps.authorize` sends ``sessions_used`` and
``starts_session``). An agent without sessions starts a fresh one every iteration, as before, and
each counts.

Both engines call these from :func:`loopwright.workflow.run_iteration`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from loopwright.models import IterationEventType, IterationResult, LoopState
from loopwright.steps.failures import PAUSING_CAUSES, failure_cause, is_transient
from loopwright.steps.prompt import NOTES_FILE_NAME

if TYPE_CHECKING:
    from loopwright.workflow import Recorder

#: Iterations kept in ``LoopState.session_history`` (the handoff summary's history).
HISTORY_LINES = 20
#: Characters of one history line (the agent's summary is cut to fit).
HISTORY_LINE_CHARS = 300
#: Characters of the progress notes quoted in a handoff summary (their tail).
NOTES_CHARS = 4000
#: The progress notes file an agent may keep, relative to the worktree (read for a handoff).
PROGRESS_NOTES_FILE = "PROGRESS.md"


def starts_session(state: LoopState) -> bool:
    """True when the next iteration starts a fresh agent session: there is none to resume, or a
    handoff is pending (an agent without sessions never keeps one, so every iteration does)."""
    return state.agent_session_id is None or state.pending_handoff is not None


def open_session(state: LoopState, supports_sessions: bool, record: Recorder) -> None:
    """Before the agent runs: continue its session or start a fresh one (SESSION_HANDOFF when a
    handoff is pending and the agent has sessions). Leaves ``state.pending_handoff`` set for the
    request's handoff summary; :func:`account_session` clears it."""
    if not supports_sessions:
        state.agent_session_id = None
        state.pending_handoff = None
    if not starts_session(state):
        return
    if state.pending_handoff is not None:
        state.handoff_reason = state.pending_handoff
        record(
            IterationEventType.SESSION_HANDOFF,
            f"agent session {state.agent_sessions} handed off after {state.session_iterations} "
            f"iteration(s): {state.pending_handoff}; session {state.agent_sessions + 1} starts "
            "with a handoff summary",
            iteration=state.iteration + 1,
            reason=state.pending_handoff,
            previous_session=state.agent_session_id,
            session_iterations=state.session_iterations,
            sessions_used=state.agent_sessions + 1,
        )
    state.agent_session_id = None
    state.agent_sessions += 1
    state.session_iterations = 0


def account_session(state: LoopState, result: IterationResult, supports_sessions: bool) -> None:
    """After the agent ran: remember its session, add the iteration to the history, and decide
    whether the next iteration hands off (``state.pending_handoff``, see the module docstring)."""
    agent = result.agent
    state.pending_handoff = None
    state.session_iterations += 1
    summary = " ".join(agent.summary.split())[:HISTORY_LINE_CHARS] or "no summary"
    line = f"iteration {result.iteration}: {summary} ({len(result.changed_files)} file(s) changed)"
    state.session_history = [*state.session_history, line][-HISTORY_LINES:]
    if not supports_sessions:
        return
    if agent.session_id:
        state.agent_session_id = agent.session_id
    state.pending_handoff = handoff_due(state, result)


def handoff_due(state: LoopState, result: IterationResult) -> str | None:
    """Why the session must be handed off after ``result``, or None while it fits."""
    config, agent = state.config, result.agent
    cause = failure_cause(agent)
    if cause is not None and cause not in PAUSING_CAUSES and not is_transient(cause):
        # a crashed, timed-out or idle run may have left its session unusable: start afresh
        return f"the session's last run failed ({cause.value})"
    if agent.handoff_requested:
        return f"the agent asked for a fresh session: {agent.handoff_requested.strip()[:300]}"
    if agent.context_percent is not None and agent.context_percent >= config.handoff_context_percent:
        return (
            f"context {agent.context_percent:.0f}% used (handoff at "
            f"{config.handoff_context_percent}%, handoff_context_percent)"
        )
    limit = config.session_max_iterations
    if limit is not None and state.session_iterations >= limit:
        return f"the session ran {state.session_iterations} iterations (session_max_iterations {limit})"
    return None


def handoff_summary(state: LoopState) -> str | None:
    """The summary a fresh session starts with after a handoff (None when none is pending): the
    reason, the recent iterations, the failing conditions and the progress notes' tail."""
    if state.pending_handoff is None:
        return None
    lines = [
        f"You continue the work of an earlier agent session ({state.pending_handoff}).",
        "",
        "Recent iterations:",
        *[f"- {line}" for line in state.session_history[-HISTORY_LINES:]],
    ]
    failing = [c.name for c in state.failing_conditions]
    lines.append(f"Failing after the last evaluation: {', '.join(failing) if failing else 'none'}")
    source, notes = _notes(state)
    if notes:
        lines += ["", f"Progress notes ({source}, tail):", notes]
    return "\n".join(lines)


def _notes(state: LoopState) -> tuple[str, str]:
    """Where the progress notes come from and their tail, or ``("", "")``: the notes the loop
    keeps from the agent's notes file (``state.progress.notes``, ``progress.md`` named by
    ``LOOPWRIGHT_NOTES_FILE``; both engines have them), else a :data:`PROGRESS_NOTES_FILE` the
    agent keeps in the worktree."""
    kept = state.progress.notes.strip()
    if kept:
        return NOTES_FILE_NAME, kept[-NOTES_CHARS:]
    if not state.worktree:
        return "", ""
    try:
        text = (Path(state.worktree) / PROGRESS_NOTES_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "", ""
    return PROGRESS_NOTES_FILE, text.strip()[-NOTES_CHARS:]
