"""Rich renderings of loops for the CLI: the live progress panel, status tables, event lists."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from loopwright.models import (
    FAILURE_CAUSE_EVENTS,
    ExitConditionStatusValue,
    IterationEvent,
    IterationEventType,
    LoopOutcome,
    LoopPhase,
    LoopResult,
    LoopState,
)

_STATUS_STYLE = {
    ExitConditionStatusValue.MET: "bold green",
    ExitConditionStatusValue.NOT_MET: "bold red",
    ExitConditionStatusValue.ERROR: "bold magenta",
    ExitConditionStatusValue.TIMEOUT: "bold magenta",
    ExitConditionStatusValue.PENDING: "dim",
}

_EVENT_STYLE = {
    IterationEventType.POLICY_WARNING: "yellow",
    IterationEventType.POLICY_DENIED: "bold red",
    IterationEventType.AGENT_FAILED: "red",
    IterationEventType.CHECKPOINT_CORRUPT: "bold magenta",
    IterationEventType.VERIFICATION_PASSED: "green",
    IterationEventType.LOOP_COMPLETED: "bold",
    IterationEventType.FEATURE_COMPLETED: "bold green",
    IterationEventType.SESSION_HANDOFF: "yellow",
    # why an agent iteration did no work (issue 15.3): AGENT_CRASHED, AGENT_RATE_LIMITED, ...
    **dict.fromkeys(FAILURE_CAUSE_EVENTS.values(), "red"),
}


def format_duration(seconds: float) -> str:
    """``75.2`` -> ``1m15s``; under a minute, seconds with one decimal."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def format_usd(dollars: float) -> str:
    """US dollars to the cent, or to the micro-dollar below a cent:
    ``1.234`` -> ``$1.23``, ``0.00042`` -> ``$0.00042``, ``0`` -> ``$0.00``."""
    if dollars == 0 or abs(dollars) >= 0.01:
        return f"${dollars:,.2f}"
    digits = f"{dollars:.6f}".rstrip("0")
    return f"${digits}00" if digits.endswith(".") else f"${digits}"


def cost_text(state: LoopState) -> str:
    """``cost $1.23/$5.00``; ``(+ unpriced tokens)`` when some model had no price."""
    budget = state.config.cost_budget_usd
    text = f"cost {format_usd(state.cost_usd)}" + (f"/{format_usd(budget)}" if budget else "")
    return text + (" (+ unpriced tokens)" if state.unpriced_models else "")


def limits_line(state: LoopState) -> str:
    """``iteration 3/10 · tokens 1200/200000 · cost $0.42/$5.00 · elapsed 4.1s``."""
    config = state.config
    parts = [f"iteration {state.iteration}/{config.max_iterations}"]
    budget = f"/{config.token_budget}" if config.token_budget else ""
    parts.append(f"tokens {state.tokens_used}{budget}")
    parts.append(cost_text(state))
    limit = f"/{format_duration(config.max_duration_seconds)}" if config.max_duration_seconds else ""
    parts.append(f"elapsed {format_duration(state.elapsed_seconds)}{limit}")
    features = features_text(state)
    if features:
        parts.append(features)
    if state.agent_sessions:
        cap = f"/{config.max_sessions}" if config.max_sessions else ""
        parts.append(f"sessions {state.agent_sessions}{cap}")
    return " · ".join(parts)


def features_text(state: LoopState) -> str:
    """``features 1/3 (now: login)`` for a loop with a feature list, else ''."""
    features = state.config.features
    if not features:
        return ""
    done = state.features_done
    current = next((f.name for f in features if f.name not in done), None)
    return f"features {len(done)}/{len(features)}" + (f" (now: {current})" if current else "")


def conditions_table(state: LoopState) -> Table:
    """One row per exit condition: name, type, status, summary."""
    table = Table(box=None, pad_edge=False, expand=False)
    table.add_column("condition")
    table.add_column("type", style="dim")
    table.add_column("status")
    table.add_column("summary", overflow="fold", max_width=80)
    for status in state.exit_conditions:
        table.add_row(
            status.name + ("" if status.required else " (optional)"),
            status.type.value,
            Text(status.status.value, style=_STATUS_STYLE[status.status]),
            status.summary,
        )
    return table


def event_line(event: IterationEvent) -> Text:
    """``#3 ITERATION_COMPLETED  message`` styled by type."""
    text = Text(f"#{event.iteration:<3} ", style="dim")
    text.append(f"{event.type.value:<26}", style=_EVENT_STYLE.get(event.type, "cyan"))
    text.append(event.message)
    return text


def progress_panel(state: LoopState, recent: Sequence[IterationEvent]) -> Panel:
    """The live display: limits, condition table and the last few events."""
    title = f"loopwright {state.loop_id} · {state.phase.value}"
    body: list[RenderableType] = [
        Text(limits_line(state), style="bold"),
        Text(
            f"branch {state.branch or '(no git isolation)'} · worktree {state.worktree}",
            style="dim",
        ),
        conditions_table(state),
    ]
    if recent:
        body.append(Text(""))
        body.extend(event_line(e) for e in recent[-6:])
    return Panel(Group(*body), title=title, title_align="left")


def result_panel(result: LoopResult, state: LoopState) -> Panel:
    """The final summary of a run."""
    if result.outcome is LoopOutcome.CONDITIONS_MET:
        style, headline = "green", "CONDITIONS_MET: every required exit condition holds"
    elif result.outcome is None and state.phase is LoopPhase.PAUSED:
        until = f" until {state.resume_at.isoformat()}" if state.resume_at else ""
        style, headline = (
            "yellow",
            f"PAUSED{until}: {result.stop_reason or 'paused'}; continue with "
            f"`loopwright resume {result.loop_id}`",
        )
    elif result.outcome is None:
        style, headline = (
            "yellow",
            f"AWAITING_RESPONSE: {state.human_request or 'waiting for a human'}; answer with "
            f"`loopwright approve {result.loop_id} --response ...`",
        )
    else:
        style, headline = "red", f"{result.outcome.value}: {result.stop_reason or ''}"
    counted = "features done" if state.config.features else "conditions met"
    lines: list[RenderableType] = [
        Text(headline, style=f"bold {style}"),
        Text(
            f"{result.iterations} iterations · {result.features_completed}/{result.features_total} "
            f"{counted} · {result.total_tokens} tokens · {format_usd(result.total_cost_usd)}"
            f"{' (+ unpriced tokens)' if state.unpriced_models else ''} · "
            f"{format_duration(result.duration_seconds)}"
            f" · {result.sessions_used} agent session(s) · {result.errors_recovered} agent error(s) "
            "recovered"
        ),
    ]
    if result.handoff_reason:
        lines.append(Text(f"last session handoff: {result.handoff_reason}", style="dim"))
    if result.branch:
        lines.append(Text(f"changes are on branch {result.branch} at {result.head_commit}", style="dim"))
    lines.append(conditions_table(state))
    return Panel(Group(*lines), title=f"loop {result.loop_id}", title_align="left", border_style=style)


def loops_table(states: Sequence[tuple[LoopState, str]]) -> Table:
    """One row per loop: id, project, phase (as shown), iteration, cost, outcome, updated."""
    table = Table()
    for column in ("loop", "project", "phase", "iteration", "cost", "outcome", "conditions", "updated"):
        table.add_column(column)
    for state, phase in states:
        met = sum(1 for c in state.exit_conditions if c.is_met)
        table.add_row(
            state.loop_id,
            state.project,
            phase,
            f"{state.iteration}/{state.config.max_iterations}",
            format_usd(state.cost_usd),
            state.outcome.value if state.outcome else "",
            f"{met}/{len(state.exit_conditions)}",
            state.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    return table
