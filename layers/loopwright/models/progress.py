"""What a loop remembers of its iterations (issue 10, points 1, 4 and 5), kept in its state.

:class:`LoopProgress` (``LoopState.progress``) holds a bounded digest of the recent iterations
(:class:`IterationDigest`: the agent's summary, the files it changed, the failing required
conditions after it), the facts the stuck policies read (iterations without change, the same
failures repeated, a tree seen before), the best evaluation so far (for ``on_regression``), and
the agent's progress notes (``progress.md``). Everything is bounded, so the state stays small
enough for every store (a DynamoDB item is at most 400 KB). It lives in the state, so it survives
resumes, checkpoints and the Step Functions engine's Lambdas alike.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

#: Iterations kept in :attr:`LoopProgress.history` (the prompt shows the last
#: ``LoopConfig.progress_history_iterations`` of them).
MAX_HISTORY = 20
#: Tree hashes kept for oscillation detection (:attr:`LoopProgress.trees`), oldest dropped first.
MAX_TREES = 500
#: Characters of an agent's summary kept per iteration.
MAX_SUMMARY_CHARS = 300
#: Changed paths kept for the newest iteration (``changed_count`` has the full number); older
#: iterations keep :data:`MAX_OLDER_CHANGED_PATHS`, what the prompt shows.
MAX_CHANGED_PATHS = 100
MAX_OLDER_CHANGED_PATHS = 8
#: Failing condition names kept per iteration.
MAX_FAILING_NAMES = 32
#: Bytes of the agent's progress notes kept (the newest part when longer), UTF-8.
MAX_NOTES_BYTES = 16 * 1024


class IterationDigest(BaseModel):
    """One iteration, as the next prompts and the stuck facts see it.

    ``failing_count`` (required conditions not MET after the iteration) and ``failing`` are None
    until the iteration is evaluated. ``reverted`` says the iteration was reverted
    (``on_regression = "revert"``); ``tree`` is the worktree's git tree hash after it (None when
    the workspace cannot tell).
    """

    model_config = ConfigDict(extra="forbid")

    iteration: int = Field(ge=0)
    summary: str = Field(default="", max_length=MAX_SUMMARY_CHARS)
    changed_paths: list[str] = Field(default_factory=list, max_length=MAX_CHANGED_PATHS)
    changed_count: int = Field(default=0, ge=0)
    commit: str | None = None
    tree: str | None = None
    failed: bool = Field(default=False, description="the agent run failed")
    failing: list[str] | None = Field(default=None, max_length=MAX_FAILING_NAMES)
    failing_count: int | None = Field(default=None, ge=0)
    reverted: bool = False


class LoopProgress(BaseModel):
    """The loop's memory of its iterations and its stuck facts (see the module docstring).

    Counters (reset by a human resuming a loop the stuck policies paused):

    * ``iterations_without_change``: iterations in a row, the latest included, whose agent
      finished and changed no file (failed agent runs are skipped: the consecutive failures
      count them);
    * ``repeated_failure_count``: evaluations in a row, the latest included, whose failing
      required conditions and failure lines (the failure signature) equal the previous
      evaluation's;
    * ``tree_seen_before``: the latest iteration changed files and left the worktree's tree equal
      to an earlier one (oscillation: A, B, A).
    """

    model_config = ConfigDict(extra="forbid")

    history: list[IterationDigest] = Field(default_factory=list, max_length=MAX_HISTORY)
    trees: list[str] = Field(
        default_factory=list, max_length=MAX_TREES, description="tree hashes seen: the start, each iteration"
    )
    iterations_without_change: int = Field(default=0, ge=0)
    repeated_failure_count: int = Field(default=0, ge=0)
    tree_seen_before: bool = False
    signature: str | None = Field(default=None, description="the last evaluation's failure signature")
    evaluated_iteration: int | None = Field(default=None, description="iteration of the last evaluation seen")
    failing_count: int | None = Field(default=None, ge=0, description="required conditions failing, last")
    baseline_failing_count: int | None = Field(default=None, ge=0, description="before iteration 1")
    best_failing_count: int | None = Field(default=None, ge=0)
    best_iteration: int | None = Field(default=None, ge=0)
    best_failing: list[str] = Field(default_factory=list, max_length=MAX_FAILING_NAMES)
    best_commit: str | None = None
    regression: str | None = Field(
        default=None, description="what the last reverted iteration broke, for the agent's next prompt"
    )
    stuck_reason: str | None = Field(
        default=None, description="why the stuck policies paused the loop (cleared when it resumes)"
    )
    notes: str = Field(default="", description="the agent's progress notes (progress.md), bounded")

    @property
    def last(self) -> IterationDigest | None:
        """The newest iteration's digest, or None before the first."""
        return self.history[-1] if self.history else None
