"""The dashboard's routes over the agent's records (issue 9, point 3), registered with the other
reads (:func:`loopwright.dashboard.reads.register_reads`) and served like them:

- ``GET /api/loops/{loop_id}/iterations``: the summaries of the loop's iteration records, oldest
  first (:class:`IterationList`);
- ``GET /api/loops/{loop_id}/iterations/{iteration}``: one record
  (:class:`~loopwright.models.records.IterationRecord`: prompt, bounded output, usage, diff stat,
  commit, each condition's result).

Records are read through the loop store (:meth:`loopwright.ports.LoopStore.get_iteration_record`;
SQLite locally, DynamoDB in AWS). 404 for an unknown loop, an iteration without a record, or a
store that keeps no records.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from pydantic import BaseModel, ConfigDict, Field

from loopwright.dashboard.deps import DashboardDeps
from loopwright.dashboard.errors import ApiError, answer_doc, error_doc
from loopwright.models.records import IterationRecord, IterationSummary
from loopwright.models.types import is_loop_id


class IterationList(BaseModel):
    """A loop's iteration records without their texts, oldest iteration first."""

    model_config = ConfigDict(extra="forbid")

    loop_id: str
    items: list[IterationSummary] = Field(default_factory=list)


def register_record_reads(app: APIGatewayRestResolver, deps: DashboardDeps) -> None:
    """Add the two routes to ``app``."""

    def no_records() -> ApiError:
        return ApiError(404, "not_found", "this deployment's store keeps no iteration records")

    @app.get(
        "/api/loops/<loop_id>/iterations",
        summary="A loop's iteration records",
        description="One summary per iteration the agent ran (exit code, duration, tokens, cost, "
        "commit, diff stat, characters of output, each condition's status), oldest first.",
        responses=answer_doc(IterationList, "the summaries") | error_doc(404, 500),
    )
    def get_iterations(loop_id: str) -> IterationList:
        deps.store.get_state(_checked(loop_id))
        try:
            items = deps.store.list_iteration_records(loop_id)
        except NotImplementedError as exc:
            raise no_records() from exc
        return IterationList(loop_id=loop_id, items=items)

    @app.get(
        "/api/loops/<loop_id>/iterations/<iteration>",
        summary="An iteration's record",
        description="The prompt the agent was given, its output (the first 16 Ki and last 256 Ki "
        "characters), usage, exit code, duration, commit and diff stat, and each condition's "
        "result with its output's tails.",
        responses=answer_doc(IterationRecord, "the record") | error_doc(404, 500),
    )
    def get_iteration(loop_id: str, iteration: int) -> IterationRecord:
        deps.store.get_state(_checked(loop_id))
        if not 1 <= iteration <= MAX_ITERATION:
            raise ApiError(
                404, "not_found", f"iterations are numbered from 1 to {MAX_ITERATION}", field="iteration"
            )
        number = iteration
        try:
            record = deps.store.get_iteration_record(loop_id, number)
        except NotImplementedError as exc:
            raise no_records() from exc
        if record is None:
            raise ApiError(
                404, "not_found", f"loop {loop_id!r} has no record of iteration {number}", field="iteration"
            )
        return record


#: The largest iteration number a loop can have (``LoopConfig.max_iterations``' bound); a larger
#: one cannot name a record, and would overflow the stores' integer keys.
MAX_ITERATION = 100_000


def _checked(loop_id: str) -> str:
    """``loop_id`` when it is one; else 404 (no such loop can exist), as the other reads."""
    if not is_loop_id(loop_id):
        raise ApiError(404, "not_found", f"no loop {loop_id[:80]!r}: not a loop id", field="loop_id")
    return loop_id
