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


def agent_files_folder(request: AgentRequest) -> Path:
    """``<state_dir>/loops/<loop_id>``: where the agent's prompt, failures and report live."""
    return Path(request.state_dir) / AGENT_FILES_FOLDER / request.loop_id


def report_file(request: AgentRequest) -> Path:
    """The path of the agent's optional ``report.json`` for ``request``."""
    return agent_files_folder(request) / REPORT_FILE_NAME


def render_prompt(request: AgentRequest) -> str:
    """The markdown prompt for ``request`` (goal, limits, warnings, failures)."""
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
    if request.human_response:
        lines += ["", "## Answer from a human (to your last question)", request.human_response]
    if request.warnings:
        lines += ["", "## Policy warnings", *[f"- {w}" for w in request.warnings]]
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
    return "\n".join(lines) + "\n"


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
    ]
