"""The prompt an agent is given each iteration, rendered from its :class:`AgentRequest`.

Every agent kind that takes text (the command agent's ``prompt.md``, the CLI backends, an
AgentCore Runtime agent's ``prompt`` field) gets this same text. It ends with what the agent can
report back through ``report.json`` (:func:`report_file`), so a real agent can ask a human a
question (``needs_human``) or say that its provider's usage limit was hit.
"""

from __future__ import annotations

from pathlib import Path

from loopwright.models import AgentRequest

#: The folder, under ``state_dir``, of each loop's agent files (``<state_dir>/loops/<loop_id>/``).
AGENT_FILES_FOLDER = "loops"
#: The file an agent may write its report to, in its loop's agent-files folder.
REPORT_FILE_NAME = "report.json"
#: The environment variable that names the report file (set for every agent run as a process).
REPORT_FILE_ENV = "LOOPWRIGHT_REPORT_FILE"
#: The agent's progress notes, in its loop's agent-files folder: it may append to them; they are
#: kept in the loop's state (bounded) and written back before every iteration, so they survive
#: iterations, resumes and machines.
NOTES_FILE_NAME = "progress.md"
#: The environment variable that names the progress notes file.
NOTES_FILE_ENV = "LOOPWRIGHT_NOTES_FILE"
#: Characters of the progress notes quoted in the prompt (the newest part; the file has them all).
PROMPT_NOTES_CHARS = 4000


def agent_files_folder(request: AgentRequest) -> Path:
    """``<state_dir>/loops/<loop_id>``: where the agent's prompt, failures and report live."""
    return Path(request.state_dir) / AGENT_FILES_FOLDER / request.loop_id


def report_file(request: AgentRequest) -> Path:
    """The path of the agent's optional ``report.json`` for ``request``."""
    return agent_files_folder(request) / REPORT_FILE_NAME


def notes_file(request: AgentRequest) -> Path:
    """The path of the agent's progress notes file (``progress.md``) for ``request``."""
    return agent_files_folder(request) / NOTES_FILE_NAME


def render_prompt(request: AgentRequest) -> str:
    """The markdown prompt for ``request`` (goal, limits, warnings, what was reverted, the
    loop's recent history, failures, progress notes)."""
    lines = [
        f"# loopwright: iteration {request.iteration} of {request.max_iterations}",
        "",
        "## Goal",
        request.goal.strip(),
        "",
        "## Limits",
        f"- iteration {request.iteration} of {request.max_iterations}",
        f"- tokens used {request.tokens_used}"
        + (f" of {request.token_budget}" if request.token_budget else " (no budget)"),
        f"- elapsed {request.elapsed_seconds:.0f} s"
        + (
            f" of {request.max_duration_seconds} s (a deadline: you are ended when it is reached)"
            if request.max_duration_seconds
            else ""
        ),
    ]
    if request.handoff:
        lines += ["", "## Handoff from the previous agent session", request.handoff]
    lines += _feature(request)
    if request.human_response:
        lines += ["", "## Answer from a human (to your last question)", request.human_response]
    if request.warnings:
        lines += ["", "## Policy warnings", *[f"- {w}" for w in request.warnings]]
    if request.regression:
        lines += ["", "## Your last iteration was reverted", request.regression]
    if request.history:
        lines += ["", "## Progress so far (recent iterations, oldest first)", *request.history]
    lines += ["", "## Failing exit conditions (last evaluation)"]
    if request.failing_conditions:
        lines += [f"- {name}" for name in request.failing_conditions]
        lines += ["", "## Failures", *[f"- {f}" for f in request.failures]]
    elif request.iteration == 1:
        # The in-process engine evaluates a baseline before iteration 1, so a first iteration
        # without failures runs only where no baseline was evaluated (the Step Functions path).
        lines.append("- none known: the exit conditions were not evaluated before this iteration")
    else:
        lines.append("- none")
    lines += _reporting(request)
    lines += _notes(request)
    return "\n".join(lines) + "\n"


def _feature(request: AgentRequest) -> list[str]:
    """The current feature's section (feature lists, issue 10.2), or none."""
    feature = request.feature
    if not feature:
        return []
    lines = [
        "",
        f"## Current feature ({feature.position} of {feature.total}): {feature.name}",
        feature.description.strip(),
        "",
        "Work on this feature only; it is done when these conditions hold: " + ", ".join(feature.conditions),
    ]
    if feature.done:
        lines.append(f"Done already (keep them working): {', '.join(feature.done)}")
    if feature.broken:
        lines.append(f"Broken since they were done (fix them first): {', '.join(feature.broken)}")
    return lines


def _notes(request: AgentRequest) -> list[str]:
    """The progress notes section: where the file is, and its newest part."""
    lines = [
        "",
        "## Progress notes",
        f"Keep notes for your next iterations in the file named by ${NOTES_FILE_ENV} "
        f"(here: {notes_file(request)}): append what you tried, what worked and what is left. "
        "It is kept across iterations and resumes (its newest 16 KiB).",
    ]
    notes = request.notes.strip()
    if notes:
        shown = notes[-PROMPT_NOTES_CHARS:]
        cut = " (newest part)" if len(shown) < len(notes) else ""
        lines += ["", f"Your notes so far{cut}:", "", "```markdown", shown, "```"]
    return lines


def _reporting(request: AgentRequest) -> list[str]:
    """The prompt's closing section: what the agent can report, and where."""
    return [
        "",
        "## Reporting back (optional)",
        "Work in the current directory; loopwright commits your changes and re-runs the exit "
        "conditions after you finish.",
        f"You may write a JSON object to the file named by ${REPORT_FILE_ENV} "
        f"(here: {report_file(request)}), with any of these fields:",
        '- "summary": one line saying what you did',
        '- "needs_human": a question for a human, when you cannot go on without an answer; the '
        "loop pauses until a human answers, and the answer is given to you next iteration",
        '- "usage_limit_resets_at": an ISO 8601 time, when your model provider\'s usage limit '
        "stopped you; the loop waits until then",
        '- "tokens_used": the tokens you used, when your tool does not report them itself',
        '- "context_percent": how full your context window is (percent), when your tool does not '
        "report it; past the loop's threshold the next iteration starts a fresh session",
        '- "handoff": why you want a fresh session next iteration (it gets a summary of the work)',
    ]
