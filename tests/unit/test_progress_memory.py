"""Progress memory, stuck facts and regression handling as plain functions (issue 10, points 1,
4 and 5): the digest of each iteration, the counters Cedar reads, the prompt's bounded history,
the progress notes' bound, stuck.cedar's pause, the revert's conditions and the config's refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from loopwright.adapters.local.cedar_policy import CedarPolicyEngine
from loopwright.models import (
    AgentResult,
    ExitConditionStatus,
    ExitConditionStatusValue,
    ExitConditionType,
    IterationResult,
    LoopConfig,
    LoopOutcome,
    LoopState,
    NextAction,
)
from loopwright.models.progress import MAX_HISTORY, MAX_NOTES_BYTES, IterationDigest, LoopProgress
from loopwright.models.workspace import SavedWork
from loopwright.progress import regression_to_revert, revert_regression
from loopwright.steps.authorize import authorize, build_authorization_request
from loopwright.steps.decide import decide
from loopwright.steps.iterate import build_agent_request
from loopwright.steps.progress import (
    NOTES_CUT_MARK,
    bounded_notes,
    failing_trend,
    failure_signature,
    history_lines,
    note_evaluation,
    note_iteration,
    progress_summary,
    remember_iteration,
    resume_after_stuck,
    stuck_facts,
)
from loopwright.steps.prompt import render_prompt
from tests.fakes import FakeWorkspace

POLICY_DIR = Path(__file__).resolve().parents[2] / "policies"
S = ExitConditionStatusValue


def _status(
    name: str, status: ExitConditionStatusValue, *failures: str, required: bool = True
) -> ExitConditionStatus:
    return ExitConditionStatus(
        name=name,
        type=ExitConditionType.CUSTOM,
        status=status,
        required=required,
        failures=list(failures),
        summary=f"took {len(failures)} s",
    )


def _config(**kwargs: object) -> LoopConfig:
    base: dict[str, object] = {
        "goal": "make it pass",
        "exit_conditions": [{"type": "CUSTOM", "name": "a", "command": "check-a", "parser": "exit_code"}],
        "max_iterations": 50,
    }
    base.update(kwargs)
    return LoopConfig.model_validate(base)


def _iterate(progress: LoopProgress, n: int, changed: list[str], tree: str, start: str | None = None) -> None:
    note_iteration(
        progress,
        iteration=n,
        summary=f"did {n}",
        failed=False,
        changed_paths=changed,
        commit=f"c{n}",
        tree=tree,
        start_tree=start,
    )


BEST = "b" * 40
HEAD = "h" * 40
REF = "refs/loopwright/loop-r/set-aside/regression-iteration-3"


class _GitWorkspace(FakeWorkspace):
    """A workspace with history: it keeps set-aside work on a ref and hashes trees."""

    def __init__(self, root: Path, *, keeps: bool = True) -> None:
        super().__init__(root)
        self.keeps = keeps
        self.set_asides: list[tuple[str, str, str]] = []
        self.moves: list[tuple[str, str]] = []
        self.hashed: list[tuple[str, str]] = []

    def set_aside(self, loop_id: str, commit: str, label: str) -> SavedWork | None:
        self.set_asides.append((loop_id, commit, label))
        if not self.keeps:
            return None
        return SavedWork(ref=f"refs/loopwright/{loop_id}/set-aside/{label}", commit=HEAD)

    def reset(self, loop_id: str, commit: str) -> None:
        self.moves.append((loop_id, commit))
        super().reset(loop_id, commit)

    def tree_hash(self, loop_id: str, commit: str) -> str | None:
        self.hashed.append((loop_id, commit))
        return f"tree of {commit}"


# ----------------------------------------------------------------------------- signature
def test_the_failure_signature_is_the_failing_required_conditions_and_their_lines() -> None:
    one = [_status("t", S.NOT_MET, "b failed", "a failed"), _status("l", S.MET)]
    # The order of the lines and the summaries (durations) do not count.
    assert failure_signature(one) == failure_signature([_status("t", S.NOT_MET, "a failed", "b failed")])
    assert failure_signature(one) != failure_signature([_status("t", S.NOT_MET, "a failed")])
    assert failure_signature(one) != failure_signature([_status("t", S.TIMEOUT, "a failed", "b failed")])
    assert failure_signature([_status("t", S.MET), _status("o", S.NOT_MET, "x", required=False)]) is None


# ----------------------------------------------------------------------------- iterations
def test_iterations_without_change_count_in_a_row_and_reset_on_a_change() -> None:
    progress = LoopProgress()
    _iterate(progress, 1, [], "T0", start="T0")
    _iterate(progress, 2, [], "T0")
    assert progress.iterations_without_change == 2 and not progress.tree_seen_before
    note_iteration(progress, iteration=3, summary="", failed=True, changed_paths=[], commit=None, tree="T0")
    assert progress.iterations_without_change == 2  # a failed run is not counted, nor resets it
    _iterate(progress, 4, ["a.py"], "T1")
    assert progress.iterations_without_change == 0
    assert progress.trees == ["T0", "T1"]


def test_without_git_isolation_no_change_is_ever_counted() -> None:
    progress = LoopProgress()
    for n in range(1, 5):
        note_iteration(
            progress,
            iteration=n,
            summary="",
            failed=False,
            changed_paths=[],
            commit=None,
            tree=None,
            changes_known=False,
        )
    assert progress.iterations_without_change == 0


def test_an_oscillation_a_b_a_is_a_tree_seen_before() -> None:
    progress = LoopProgress()
    _iterate(progress, 1, ["s.txt"], "A", start="BASE")
    _iterate(progress, 2, ["s.txt"], "B")
    assert not progress.tree_seen_before
    _iterate(progress, 3, ["s.txt"], "A")
    assert progress.tree_seen_before
    _iterate(progress, 4, ["s.txt"], "C")
    assert not progress.tree_seen_before
    _iterate(progress, 5, ["s.txt"], "BASE")  # back to where the loop started
    assert progress.tree_seen_before


def test_an_unknown_tree_never_counts_as_seen() -> None:
    progress = LoopProgress()
    note_iteration(
        progress, iteration=1, summary="", failed=False, changed_paths=["a"], commit=None, tree=None
    )
    note_iteration(
        progress, iteration=2, summary="", failed=False, changed_paths=["a"], commit=None, tree=None
    )
    assert not progress.tree_seen_before and progress.trees == []


def test_the_history_keeps_the_newest_iterations_and_bounds_each_digest() -> None:
    progress = LoopProgress()
    for n in range(1, MAX_HISTORY + 6):
        note_iteration(
            progress,
            iteration=n,
            summary="word " * 500,
            failed=False,
            changed_paths=[f"f{i}.py" for i in range(300)],
            commit=None,
            tree=None,
        )
    assert len(progress.history) == MAX_HISTORY
    assert progress.history[0].iteration == 6
    last = progress.history[-1]
    assert len(last.summary) == 300 and len(last.changed_paths) == 100 and last.changed_count == 300
    assert all(len(d.changed_paths) == 8 and d.changed_count == 300 for d in progress.history[:-1])


def test_an_iterations_digest_keeps_its_commit_tree_and_failure() -> None:
    progress = LoopProgress()
    digest = note_iteration(
        progress, iteration=1, summary="  tried\n it ", failed=True, changed_paths=[], commit="c1", tree="T1"
    )
    assert progress.history == [digest]
    assert (digest.summary, digest.commit, digest.tree, digest.failed) == ("tried it", "c1", "T1", True)


def _ran(
    iteration: int, *, commit: str | None, changed: list[str], notes: str | None = None
) -> IterationResult:
    agent = AgentResult(summary=f"did {iteration}", notes=notes)
    return IterationResult(iteration=iteration, agent=agent, commit=commit, changed_files=changed)


def test_remembering_an_iteration_hashes_the_trees_before_and_after_it(tmp_path: Path) -> None:
    state = LoopState(loop_id="loop-m", config=_config(), iteration=1)
    state.progress.regression = "Iteration 1 ... It broke: lint."
    workspace = _GitWorkspace(tmp_path)
    ran = _ran(1, commit="c1", changed=["a.py"], notes="step 1")
    digest = remember_iteration(state, ran, workspace, "c0")
    assert workspace.hashed == [("loop-m", "c0"), ("loop-m", "c1")]
    assert state.progress.trees == ["tree of c0", "tree of c1"]
    assert (digest.iteration, digest.summary, digest.commit, digest.tree) == (1, "did 1", "c1", "tree of c1")
    assert state.progress.regression is None  # the prompt that carried it is done
    assert state.progress.notes == "step 1"
    # Iteration 2 changes nothing: its tree is the head's; the start is not hashed again.
    digest = remember_iteration(state, _ran(2, commit=None, changed=[]), workspace, "c1")
    assert workspace.hashed[2:] == [("loop-m", "c1")]
    assert (digest.commit, digest.tree) == (None, "tree of c1")
    assert state.progress.notes == "step 1"  # no notes returned: the last ones stay
    assert state.progress.iterations_without_change == 1


def test_remembering_an_iteration_without_any_commit_hashes_nothing(tmp_path: Path) -> None:
    state = LoopState(loop_id="loop-m", config=_config(git_isolation=False), iteration=1)
    workspace = _GitWorkspace(tmp_path)
    digest = remember_iteration(state, _ran(1, commit=None, changed=[]), workspace, None)
    assert workspace.hashed == [] and state.progress.trees == []
    assert digest.tree is None
    assert state.progress.iterations_without_change == 0  # without git isolation: unknown


# ----------------------------------------------------------------------------- evaluations
def test_repeated_failures_count_in_a_row_and_best_follows_the_fewest_failing() -> None:
    progress = LoopProgress()
    failing = [_status("t", S.NOT_MET, "x"), _status("l", S.NOT_MET, "y")]
    assert note_evaluation(progress, failing, iteration=0, commit="base") is False
    assert (progress.repeated_failure_count, progress.best_failing_count, progress.best_commit) == (
        0,
        2,
        "base",
    )
    _iterate(progress, 1, ["a"], "T1")
    assert note_evaluation(progress, failing, iteration=1, commit="c1") is False
    assert progress.repeated_failure_count == 1
    assert progress.best_iteration == 1  # the newest of equals
    # Evaluating the same iteration again (a resume) counts no repeat.
    note_evaluation(progress, failing, iteration=1, commit="c1")
    assert progress.repeated_failure_count == 1
    better = [_status("t", S.NOT_MET, "x"), _status("l", S.MET)]
    _iterate(progress, 2, ["a"], "T2")
    assert note_evaluation(progress, better, iteration=2, commit="c2") is False
    assert (progress.repeated_failure_count, progress.best_failing_count, progress.best_failing) == (
        0,
        1,
        ["t"],
    )
    _iterate(progress, 3, ["a"], "T3")
    assert note_evaluation(progress, failing, iteration=3, commit="c3") is True  # a regression
    assert (progress.best_commit, progress.failing_count) == ("c2", 2)
    assert progress.history[-1].failing == ["t", "l"]


def test_a_silent_check_counts_no_repeat() -> None:
    progress = LoopProgress()
    for n in range(4):
        note_evaluation(progress, [_status("files", S.NOT_MET)], iteration=n, commit=f"c{n}")
    assert progress.repeated_failure_count == 0


def test_stuck_facts_are_the_cedar_context_entries() -> None:
    progress = LoopProgress()
    assert stuck_facts(progress) == {
        "iterations_without_change": 0,
        "repeated_failure_count": 0,
        "tree_seen_before": False,
        "failing_count": 0,
        "best_failing_count": 0,
        "changed_paths": [],
    }
    _iterate(progress, 1, [f"p{i}" for i in range(150)], "T1", start="T0")
    note_evaluation(progress, [_status("t", S.NOT_MET)], iteration=1, commit="c1")
    facts = stuck_facts(progress)
    assert len(facts["changed_paths"]) == 100
    assert (facts["failing_count"], facts["best_failing_count"]) == (1, 1)
    _iterate(progress, 2, ["q"], "T2")
    note_evaluation(progress, [_status("t", S.NOT_MET), _status("u", S.NOT_MET)], iteration=2, commit="c2")
    facts = stuck_facts(progress)
    assert (facts["failing_count"], facts["best_failing_count"], facts["changed_paths"]) == (2, 1, ["q"])


# ----------------------------------------------------------------------------- prompt history
def test_history_lines_show_the_last_iterations_and_the_trend() -> None:
    progress = LoopProgress()
    note_evaluation(
        progress,
        [_status("a", S.NOT_MET), _status("b", S.NOT_MET), _status("c", S.NOT_MET)],
        iteration=0,
        commit="b",
    )
    _iterate(progress, 1, [f"src/m{i}.py" for i in range(10)], "T1", start="T0")
    note_evaluation(progress, [_status("a", S.NOT_MET), _status("b", S.NOT_MET)], iteration=1, commit="c1")
    _iterate(progress, 2, [], "T1")
    note_evaluation(progress, [_status("a", S.NOT_MET), _status("b", S.NOT_MET)], iteration=2, commit="c2")
    lines = history_lines(progress, 5)
    assert lines[0] == (
        "- iteration 1: did 1 · 10 files changed: src/m0.py, src/m1.py, src/m2.py, src/m3.py, "
        "src/m4.py, src/m5.py, src/m6.py, src/m7.py (+2 more) · 2 failing: a, b"
    )
    assert lines[1] == "- iteration 2: did 2 · no file changed · 2 failing: a, b"
    assert lines[2] == "- failing required conditions: 3 -> 2 -> 2 (best 2, at iteration 2)"
    assert history_lines(progress, 1)[-1] == "- failing required conditions: 2 (best 2, at iteration 2)"
    assert history_lines(progress, 0) == [] and history_lines(LoopProgress(), 5) == []


def test_each_history_line_says_what_changed_and_how_it_was_evaluated() -> None:
    progress = LoopProgress(
        history=[
            IterationDigest(
                iteration=1, failed=True, changed_paths=["a.py"], changed_count=1, failing_count=0
            ),
            IterationDigest(iteration=2, changed_paths=["a.py", "b.py"], changed_count=2),
            IterationDigest(
                iteration=3,
                summary="broke lint",
                changed_paths=[f"p{i}" for i in range(9)],
                changed_count=9,
                failing=["lint"],
                failing_count=1,
                reverted=True,
            ),
            IterationDigest(
                iteration=4, summary="s", changed_paths=[f"p{i}" for i in range(8)], changed_count=8
            ),
        ]
    )
    eight = ", ".join(f"p{i}" for i in range(8))
    assert history_lines(progress, 4) == [
        "- iteration 1: agent failed · 1 file changed: a.py · no required condition failing",
        "- iteration 2: no summary · 2 files changed: a.py, b.py · not evaluated",
        f"- iteration 3 [reverted]: broke lint · 9 files changed: {eight} (+1 more) · 1 failing: lint",
        f"- iteration 4: s · 8 files changed: {eight} · not evaluated",
        "- failing required conditions: 0 -> 1",
    ]


def test_the_prompt_history_is_bounded_whatever_the_agent_wrote() -> None:
    progress = LoopProgress()
    for n in range(1, 40):
        note_iteration(
            progress,
            iteration=n,
            summary="x" * 10_000,
            failed=False,
            changed_paths=["p" * 200] * 200,
            commit=None,
            tree=None,
        )
    state = LoopState(
        loop_id="l", config=_config(progress_history_iterations=5), iteration=39, progress=progress
    )
    request = build_agent_request(state, Path("/state"))
    assert len(request.history) == 5
    assert sum(len(line) for line in request.history) < 5 * 2000
    assert "## Progress so far" in render_prompt(request)


def test_progress_notes_are_bounded_to_their_newest_part() -> None:
    assert bounded_notes("short") == "short"
    assert bounded_notes("a" * MAX_NOTES_BYTES) == "a" * MAX_NOTES_BYTES  # just fits
    long = "é" * MAX_NOTES_BYTES + "END"
    kept = bounded_notes(long)
    assert kept.startswith(NOTES_CUT_MARK) and kept.endswith("END")
    assert len(kept.encode("utf-8")) <= MAX_NOTES_BYTES


def test_the_prompt_quotes_the_newest_notes_and_the_reverted_iteration() -> None:
    state = LoopState(loop_id="l", config=_config(), iteration=2)
    state.progress.notes = "a" * 5000 + "\nlast line"
    state.progress.regression = "Iteration 2 ... It broke: lint."
    text = render_prompt(build_agent_request(state, Path("/state")))
    assert "## Your last iteration was reverted\nIteration 2 ... It broke: lint." in text
    assert "Your notes so far (newest part):" in text and "last line" in text
    assert "a" * 4100 not in text
    assert "/state/loops/l/progress.md" in text


# ----------------------------------------------------------------------------- Cedar
@pytest.fixture(scope="module")
def engine() -> CedarPolicyEngine:
    return CedarPolicyEngine(POLICY_DIR)


def _stuck_state(**progress: object) -> LoopState:
    state = LoopState(loop_id="loop-s", config=_config(max_stuck_iterations=3), iteration=4)
    state.progress = LoopProgress.model_validate(progress)
    return state


@pytest.mark.parametrize(
    ("progress", "policy"),
    [
        ({"iterations_without_change": 3}, "stuck-no-progress"),
        ({"repeated_failure_count": 3}, "stuck-no-progress"),
        ({"tree_seen_before": True}, "stuck-oscillation"),
    ],
)
def test_stuck_policies_pause_the_loop_for_a_human(
    engine: CedarPolicyEngine, progress: dict[str, object], policy: str
) -> None:
    auth = authorize(_stuck_state(**progress), engine)
    assert not auth.allowed and auth.pause and auth.denied_by == [policy]
    assert auth.outcome is LoopOutcome.STUCK
    assert "limit 3" in (auth.reason or "")
    decision = decide(authorization=auth)
    assert decision.action is NextAction.PAUSE and decision.outcome is None
    assert decision.reason.startswith("paused for a human: policy '" + policy)


def test_below_the_count_or_turned_off_the_loop_goes_on(engine: CedarPolicyEngine) -> None:
    assert authorize(_stuck_state(iterations_without_change=2, repeated_failure_count=2), engine).allowed
    state = _stuck_state(iterations_without_change=9, tree_seen_before=True)
    state.config = _config(max_stuck_iterations=False)
    assert "max_stuck_iterations" not in build_authorization_request(state).resource_attributes
    assert authorize(state, engine).allowed


def test_a_limit_reached_while_stuck_ends_the_loop_with_the_limit(engine: CedarPolicyEngine) -> None:
    state = _stuck_state(iterations_without_change=5)
    state.config = _config(max_stuck_iterations=3, max_iterations=4)
    auth = authorize(state, engine)
    assert not auth.pause and auth.denied_by == ["iteration-limit"]
    assert decide(authorization=auth).outcome is LoopOutcome.ITERATION_LIMIT


def test_a_human_resuming_a_stuck_loop_starts_the_counters_over() -> None:
    state = _stuck_state(iterations_without_change=3, repeated_failure_count=4, tree_seen_before=True)
    assert resume_after_stuck(state) is False  # not paused by the stuck policies
    state.progress.stuck_reason = "policy 'stuck-no-progress' denied iteration 5"
    state.human_response = "look at b.py"
    assert resume_after_stuck(state) is True
    facts = stuck_facts(state.progress)
    assert (
        facts["iterations_without_change"],
        facts["repeated_failure_count"],
        facts["tree_seen_before"],
    ) == (
        0,
        0,
        False,
    )
    assert state.progress.stuck_reason is None
    assert state.human_response.startswith("look at b.py\n\nThe loop was paused because it made no progress")


def test_a_resumed_stuck_loop_tells_the_agent_why_it_was_paused() -> None:
    state = _stuck_state(repeated_failure_count=3)
    state.progress.stuck_reason = "r" * 600
    assert resume_after_stuck(state) is True
    assert state.human_response == (
        f"The loop was paused because it made no progress ({'r' * 500}); a human resumed it. "
        "Do not repeat what the history shows: try a different approach."
    )


# ----------------------------------------------------------------------------- regression
class _Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, object]]] = []

    def __call__(
        self, event_type: object, message: str = "", *, iteration: int | None = None, **data: object
    ) -> None:
        self.events.append((str(event_type), message, {"iteration": iteration, **data}))


def _regressed(**config: object) -> LoopState:
    state = LoopState(loop_id="loop-r", config=_config(**config), iteration=3, head_commit="c3")
    progress = state.progress
    note_evaluation(progress, [_status("t", S.NOT_MET)], iteration=2, commit="c2")
    _iterate(progress, 3, ["a.py"], "T3")
    state.exit_conditions = [_status("t", S.NOT_MET), _status("lint", S.NOT_MET, "E1")]
    note_evaluation(progress, state.exit_conditions, iteration=3, commit="c3")
    return state


def test_a_regression_is_reverted_only_under_revert_with_git() -> None:
    assert regression_to_revert(_regressed(on_regression="revert"))
    assert not regression_to_revert(_regressed())  # keep, the default
    assert not regression_to_revert(_regressed(on_regression="revert", git_isolation=False))
    errored = _regressed(on_regression="revert")
    errored.exit_conditions = [_status("t", S.ERROR), _status("lint", S.NOT_MET)]
    assert not regression_to_revert(errored)  # an ERROR pauses the loop instead


def test_revert_moves_the_branch_to_the_best_commit_and_tells_the_agent(tmp_path: Path) -> None:
    state = _regressed(on_regression="revert")
    workspace = FakeWorkspace(tmp_path)
    record = _Recorder()
    assert revert_regression(state, workspace, record) is True
    assert state.head_commit == "c2"
    assert state.progress.history[-1].reverted
    assert "It broke: lint" in (state.progress.regression or "")
    [(kind, message, data)] = record.events
    assert kind == "ITERATION_REVERTED" and "reverted to c2" in message
    assert (data["commit"], data["reverted_to"], data["broke"]) == ("c3", "c2", ["lint"])
    assert workspace.resets == ["c2"]
    assert revert_regression(state, workspace, record) is False  # the head is the best now


def _broke_two(**config: object) -> LoopState:
    """Iteration 3 leaves t, lint and fmt failing where iteration 2 (the best) left only t."""
    state = LoopState(
        loop_id="loop-r", config=_config(on_regression="revert", **config), iteration=3, head_commit=HEAD
    )
    progress = state.progress
    note_evaluation(progress, [_status("t", S.NOT_MET)], iteration=2, commit=BEST)
    _iterate(progress, 3, ["a.py"], "T3")
    state.exit_conditions = [_status("t", S.NOT_MET), _status("lint", S.NOT_MET), _status("fmt", S.NOT_MET)]
    note_evaluation(progress, state.exit_conditions, iteration=3, commit=HEAD)
    return state


def _evaluated(iteration: int, *, failing: int | None, best: int | None) -> LoopState:
    """A loop whose last evaluation (of ``iteration``, at the head) left ``failing`` required
    conditions failing where the best one (another commit) left ``best``."""
    state = LoopState(
        loop_id="loop-r", config=_config(on_regression="revert"), iteration=iteration, head_commit=HEAD
    )
    state.progress = LoopProgress(
        evaluated_iteration=iteration, failing_count=failing, best_failing_count=best, best_commit=BEST
    )
    return state


def test_the_first_iteration_is_reverted_when_it_is_worse_than_the_baseline() -> None:
    state = LoopState(loop_id="loop-r", config=_config(on_regression="revert"), head_commit="c0")
    note_evaluation(state.progress, [_status("t", S.NOT_MET)], iteration=0, commit="c0")
    state.iteration, state.head_commit = 1, "c1"
    _iterate(state.progress, 1, ["a.py"], "T1")
    state.exit_conditions = [_status("t", S.NOT_MET), _status("lint", S.NOT_MET)]
    note_evaluation(state.progress, state.exit_conditions, iteration=1, commit="c1")
    assert regression_to_revert(state)


def test_an_iteration_not_evaluated_yet_is_not_reverted() -> None:
    state = _broke_two()
    state.iteration, state.head_commit = 4, "c4"  # iteration 4 ran; the evaluation is iteration 3's
    assert not regression_to_revert(state)


def test_only_more_failing_than_the_best_is_a_regression() -> None:
    assert regression_to_revert(_evaluated(3, failing=3, best=2))
    assert not regression_to_revert(_evaluated(3, failing=2, best=2))  # as good as the best: kept
    assert not regression_to_revert(_evaluated(3, failing=1, best=2))
    assert not regression_to_revert(_evaluated(3, failing=2, best=None))  # no best to go back to
    assert not regression_to_revert(_evaluated(3, failing=None, best=2))


def test_a_revert_keeps_the_change_on_a_ref_and_names_what_it_broke(tmp_path: Path) -> None:
    state = _broke_two()
    workspace = _GitWorkspace(tmp_path)
    record = _Recorder()
    assert revert_regression(state, workspace, record) is True
    assert workspace.set_asides == [("loop-r", BEST, "regression-iteration-3")]
    assert workspace.moves == [("loop-r", BEST)]
    assert state.head_commit == BEST
    assert state.progress.regression == (
        "Iteration 3 left 3 required conditions failing (best: 1 at iteration 2), so it was reverted "
        f"to commit bbbbbbbbbbbb; your change is kept on {REF}. It broke: lint, fmt. The failures below "
        "are those of the reverted change: do not repeat it."
    )
    assert record.events == [
        (
            "ITERATION_REVERTED",
            "iteration 3: 3 required conditions failing (best: 1 at iteration 2); reverted to "
            f"bbbbbbbbbbbb, kept on {REF}; broke lint, fmt",
            {
                "iteration": 3,
                "commit": HEAD,
                "reverted_to": BEST,
                "ref": REF,
                "failing_count": 3,
                "best_failing_count": 1,
                "best_iteration": 2,
                "broke": ["lint", "fmt"],
            },
        )
    ]


def test_a_revert_in_a_workspace_that_keeps_nothing_names_no_ref(tmp_path: Path) -> None:
    state = _broke_two()
    record = _Recorder()
    assert revert_regression(state, _GitWorkspace(tmp_path, keeps=False), record) is True
    assert state.progress.regression == (
        "Iteration 3 left 3 required conditions failing (best: 1 at iteration 2), so it was reverted "
        "to commit bbbbbbbbbbbb. It broke: lint, fmt. The failures below are those of the reverted "
        "change: do not repeat it."
    )
    [(_, message, data)] = record.events
    assert message == (
        "iteration 3: 3 required conditions failing (best: 1 at iteration 2); reverted to "
        "bbbbbbbbbbbb; broke lint, fmt"
    )
    assert data["ref"] is None


@pytest.mark.parametrize(
    "field",
    [
        {"max_stuck_iterations": 0},
        {"max_stuck_iterations": True},
        {"max_stuck_iterations": "3"},
        {"on_regression": "undo"},
        {"progress_history_iterations": -1},
        {"progress_history_iterations": 21},
    ],
)
def test_bad_settings_are_refused_naming_the_field(field: dict[str, object]) -> None:
    with pytest.raises(ValidationError) as error:
        _config(**field)
    assert next(iter(field)) in str(error.value)


# ----------------------------------------------------------------------------- summary
def test_the_status_line_shows_the_trend_and_the_stuck_facts_with_the_pause_count() -> None:
    assert progress_summary(LoopProgress(), 3) is None  # nothing ran yet
    digests = [
        IterationDigest(iteration=n, failing_count=count, changed_count=1)
        for n, count in ((1, 2), (2, 2), (3, 2))
    ]
    progress = LoopProgress(
        history=digests,
        baseline_failing_count=3,
        best_failing_count=2,
        best_iteration=1,
        repeated_failure_count=2,
        iterations_without_change=1,
    )
    assert progress_summary(progress, 3) == (
        "failing 3 -> 2 -> 2 -> 2 (best 2, at iteration 1) · 1 iteration without change · "
        "same failures 2 times in a row (pauses at 3)"
    )
    # without stuck detection no pause is announced; an oscillation is said last
    progress.tree_seen_before = True
    assert progress_summary(progress, None) == (
        "failing 3 -> 2 -> 2 -> 2 (best 2, at iteration 1) · 1 iteration without change · "
        "same failures 2 times in a row · the last iteration went back to an earlier tree"
    )


def test_the_status_line_covers_the_last_five_iterations() -> None:
    digests = [IterationDigest(iteration=n, failing_count=10 - n) for n in range(1, 9)]
    progress = LoopProgress(history=digests, baseline_failing_count=10)
    assert progress_summary(progress, 3) == "failing 6 -> 5 -> 4 -> 3 -> 2"  # iterations 4 to 8


def test_the_status_line_says_only_the_stuck_facts_there_are() -> None:
    progress = LoopProgress(history=[IterationDigest(iteration=1), IterationDigest(iteration=2)])
    assert progress_summary(progress, 3) is None  # not evaluated, not stuck: nothing to say
    progress.iterations_without_change = 2
    assert progress_summary(progress, 3) == "2 iterations without change (pauses at 3)"
    progress.iterations_without_change, progress.repeated_failure_count = 0, 1
    assert progress_summary(progress, 3) == "same failures 1 time in a row (pauses at 3)"
    progress.repeated_failure_count, progress.tree_seen_before = 0, True
    assert progress_summary(progress, 3) == "the last iteration went back to an earlier tree"
    progress.history[-1].failing_count = 1
    assert progress_summary(progress, 3) == "failing 1 · the last iteration went back to an earlier tree"


def test_the_failing_trend_starts_at_the_baseline_only_with_iteration_one() -> None:
    digests = [IterationDigest(iteration=n, failing_count=4) for n in (1, 2)]
    progress = LoopProgress(history=digests, baseline_failing_count=5, best_failing_count=4, best_iteration=2)
    assert failing_trend(progress, 2) == "5 -> 4 -> 4 (best 4, at iteration 2)"
    assert failing_trend(progress, 1) == "4 (best 4, at iteration 2)"
    assert failing_trend(progress, 0) is None
    assert failing_trend(LoopProgress(history=[IterationDigest(iteration=3)]), 5) is None
