"""The prompt an agent is given each iteration, rendered from its :class:`AgentRequest`.

Every agent kind that takes text (the command agent's ``prompt.md``, the CLI backends, an
AgentCore Runtime agent's ``prompt`` field) gets this same text.
"""

from __future__ import annotations

from loopwright.models import AgentRequest


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
        + (f" of {request.max_duration_seconds} s" if request.max_duration_seconds else ""),
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
    return "\n".join(lines) + "\n"
