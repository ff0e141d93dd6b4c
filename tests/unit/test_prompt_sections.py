"""The agent's prompt, to the character: each section (goal, limits, a human's answer, policy
warnings, failing conditions and their failures, reporting back) and where the files live."""

from __future__ import annotations

from pathlib import Path

from loopwright.models import AgentRequest, FeatureBrief
from loopwright.steps.prompt import (
    AGENT_FILES_FOLDER,
    REPORT_FILE_ENV,
    REPORT_FILE_NAME,
    agent_files_folder,
    render_prompt,
    report_file,
)


def _request(**kwargs: object) -> AgentRequest:
    base: dict[str, object] = {
        "loop_id": "loop-1",
        "iteration": 3,
        "goal": "  make the tests pass\n",
        "worktree": "/w",
        "state_dir": "/state",
        "max_iterations": 10,
        "tokens_used": 1234,
    }
    base.update(kwargs)
    return AgentRequest.model_validate(base)


REPORTING = """
## Reporting back (optional)
Work in the current directory; loopwright commits your changes and re-runs the exit conditions \
after you finish.
You may write a JSON object to the file named by $LOOPWRIGHT_REPORT_FILE \
(here: /state/loops/loop-1/report.json), with any of these fields:
- "summary": one line saying what you did
- "needs_human": a question for a human, when you cannot go on without an answer; the loop \
pauses until a human answers, and the answer is given to you next iteration
- "usage_limit_resets_at": an ISO 8601 time, when your model provider's usage limit stopped \
you; the loop waits until then
- "tokens_used": the tokens you used, when your tool does not report them itself
- "context_percent": how full your context window is (percent), when your tool does not report \
it; past the loop's threshold the next iteration starts a fresh session
- "handoff": why you want a fresh session next iteration (it gets a summary of the work)

## Progress notes
Keep notes for your next iterations in the file named by $LOOPWRIGHT_NOTES_FILE \
(here: /state/loops/loop-1/progress.md): append what you tried, what worked and what is left. \
It is kept across iterations and resumes (its newest 16 KiB).
"""


def test_agent_files_live_under_the_state_dir_per_loop() -> None:
    request = _request()
    assert (AGENT_FILES_FOLDER, REPORT_FILE_NAME, REPORT_FILE_ENV) == (
        "loops",
        "report.json",
        "LOOPWRIGHT_REPORT_FILE",
    )
    assert agent_files_folder(request) == Path("/state/loops/loop-1")
    assert report_file(request) == Path("/state/loops/loop-1/report.json")


def test_prompt_without_budgets_or_failures_at_a_later_iteration() -> None:
    text = render_prompt(_request(elapsed_seconds=61.6))
    assert text == (
        "# loopwright: iteration 3 of 10\n"
        "\n"
        "## Goal\n"
        "make the tests pass\n"
        "\n"
        "## Limits\n"
        "- iteration 3 of 10\n"
        "- tokens used 1234 (no budget)\n"
        "- elapsed 62 s\n"
        "\n"
        "## Failing exit conditions (last evaluation)\n"
        "- none\n" + REPORTING
    )


def test_prompt_with_every_section() -> None:
    text = render_prompt(
        _request(
            token_budget=5000,
            elapsed_seconds=12.4,
            max_duration_seconds=3600,
            human_response="use the v2 API",
            warnings=["90% of the token budget used", "slow tests"],
            failing_conditions=["tests", "lint"],
            failures=["ALL_TESTS_PASS (tests): test_a failed", "LINTING_CLEAN (lint): a.py:1:1 F401"],
        )
    )
    assert text == (
        "# loopwright: iteration 3 of 10\n"
        "\n"
        "## Goal\n"
        "make the tests pass\n"
        "\n"
        "## Limits\n"
        "- iteration 3 of 10\n"
        "- tokens used 1234 of 5000\n"
        "- elapsed 12 s of 3600 s (a deadline: you are ended when it is reached)\n"
        "\n"
        "## Answer from a human (to your last question)\n"
        "use the v2 API\n"
        "\n"
        "## Policy warnings\n"
        "- 90% of the token budget used\n"
        "- slow tests\n"
        "\n"
        "## Failing exit conditions (last evaluation)\n"
        "- tests\n"
        "- lint\n"
        "\n"
        "## Failures\n"
        "- ALL_TESTS_PASS (tests): test_a failed\n"
        "- LINTING_CLEAN (lint): a.py:1:1 F401\n" + REPORTING
    )


def test_first_iteration_without_a_baseline_says_the_conditions_were_not_evaluated() -> None:
    text = render_prompt(_request(iteration=1))
    assert text.startswith("# loopwright: iteration 1 of 10\n")
    assert (
        "## Failing exit conditions (last evaluation)\n"
        "- none known: the exit conditions were not evaluated before this iteration\n"
        "\n## Reporting back (optional)\n"
    ) in text
    assert "- none\n" not in text


def test_first_iteration_with_failures_lists_them() -> None:
    text = render_prompt(_request(iteration=1, failing_conditions=["tests"], failures=["x failed"]))
    assert "- tests\n\n## Failures\n- x failed\n\n## Reporting" in text
    assert "none known" not in text


def test_empty_answer_warnings_and_zero_budgets_leave_their_sections_out() -> None:
    text = render_prompt(_request(human_response="", warnings=[], token_budget=0, max_duration_seconds=0))
    assert "## Answer from a human" not in text
    assert "## Policy warnings" not in text
    assert "- tokens used 1234 (no budget)\n- elapsed 0 s\n\n## Failing" in text


def test_prompt_names_the_current_feature_and_a_handoff() -> None:
    text = render_prompt(
        _request(
            handoff="You continue the work of an earlier agent session (context 85% used).",
            feature=FeatureBrief(
                name="login",
                description="users can log in",
                position=2,
                total=3,
                done=["signup"],
                conditions=["login:tests"],
            ),
        )
    )
    assert "## Handoff from the previous agent session\nYou continue the work" in text
    assert "## Current feature (2 of 3): login\nusers can log in\n" in text
    assert "it is done when these conditions hold: login:tests" in text
    assert "Done already (keep them working): signup" in text
    assert "Broken since" not in text
    assert text.index("## Handoff") < text.index("## Current feature") < text.index("## Failing")


def test_prompt_without_a_feature_list_has_no_feature_or_handoff_section() -> None:
    text = render_prompt(_request())
    assert "## Current feature" not in text and "## Handoff" not in text
