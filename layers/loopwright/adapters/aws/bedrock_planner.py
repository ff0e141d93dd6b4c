"""A :class:`~loopwright.plans.ports.Planner` over Amazon Bedrock's Converse API.

The model gets a system prompt with the JSON schema of :class:`~loopwright.models.plans.PlanDraft`
(from the pydantic model) and the rules of a plan, and the inspection packet as JSON; it answers
with one JSON object. The answer is validated as a draft (:func:`~loopwright.plans.validation.parse_draft`,
then :func:`~loopwright.plans.validation.validate_draft`: a DAG, known dependencies, at most 50
tasks, valid loop configs) and against what a model may choose (below). An invalid answer is sent
back to the model with the error, naming the field, for up to ``max_attempts`` answers in all
(default 3: the first and two corrections); then :class:`PlanGenerationError`, which
:func:`loopwright.plans.service.generate_plan` records as a FAILED plan with a failed
``plan_generation`` check (seed 003 "Plan Generation Failure").

**A model never chooses what runs.** The tasks' loops inherit the inspected loop's agent,
repository and limits (its config without ``goal``, ``project`` and ``exit_conditions``); a draft
that sets ``agent`` or ``repository`` is refused, and every exit condition or gate it names must be
one of the inspected loop's exit conditions (same type and command) or a built-in type with its
default command. A model can thus split, order and describe the work, never introduce a command.

Errors of Bedrock (throttling after botocore's standard retries, a model id the account cannot
use, a missing permission) are :class:`PlanGenerationError` too, with the AWS error code in the
message. IAM: ``bedrock:InvokeModel`` on the model (for an inference profile: the profile and the
foundation models it routes to).
"""

from __future__ import annotations

import json
import os
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from loopwright.adapters.aws._errors import DEFAULT_MAX_ATTEMPTS, domain_error, retry_config
from loopwright.models import ExitConditionConfig
from loopwright.models.plans import MAX_PLAN_TASKS, InspectionPacket, PlanDraft
from loopwright.plans.errors import PlanGenerationError, PlanValidationError
from loopwright.plans.ports import Planner
from loopwright.plans.validation import parse_draft, validate_draft

#: Environment variable naming the default model (a model id or an inference profile id/ARN).
MODEL_ENV = "LOOPWRIGHT_PLANNER_MODEL_ID"
#: Default model: Claude Sonnet 4, the seed's example (``claude-sonnet-4-20250514``), through its
#: global cross-region inference profile (Claude 4 models are not offered on demand by model id).
DEFAULT_MODEL_ID = "global.anthropic.claude-sonnet-4-20250514-v1:0"
#: Answers asked for in all: the first and two corrections.
DEFAULT_MAX_ATTEMPTS_ANSWERS = 3
#: Most tokens of one answer (a 50-task plan with goals is about 10,000 tokens).
DEFAULT_MAX_TOKENS = 16_000
#: LoopConfig fields a task's loop inherits from the inspected loop (the model may not set them).
INHERITED_ONLY = ("agent", "repository")
#: LoopConfig fields of the inspected loop not carried into the plan's defaults.
_NOT_INHERITED = {"goal", "project", "exit_conditions"}

_RULES = f"""You plan work for loopwright: each task of a plan runs as an autonomous coding loop on
the same git repository until the task's exit conditions hold; a task starts from the merged
results of the tasks it depends on. Decompose the inspection packet (a loop that ended without
meeting its exit conditions) into a plan.

Answer with ONE JSON object and nothing else (no prose, no code fence), valid against this JSON
schema of a PlanDraft:

{{schema}}

Rules:
- 1 to {MAX_PLAN_TASKS} tasks (few, well separated tasks are better: parallel tasks must not edit the
  same lines); task_id: letters, digits, '_' or '-', unique; depends_on lists other task_ids; no
  dependency cycle.
- Each task's "loop" may set "goal" (what the task's agent must do, with the failures it must fix),
  "exit_conditions" and limits ("max_iterations", "token_budget", "max_duration_seconds").
- Every task needs exit_conditions (in its loop, or in "defaults"). Use ONLY the packet's
  loop_config.exit_conditions (copy type, name and command exactly) or a built-in type without a
  command (ALL_TESTS_PASS, LINTING_CLEAN, BUILD_SUCCEEDS, SECURITY_SCAN_CLEAN).
- Never set "agent", "repository", "project" or "git_isolation": they come from the inspected loop.
- "gates" (run once on the merged result) follow the same rule as exit_conditions; leave them out
  to use the tasks' exit conditions.
"""


class BedrockPlanner(Planner):
    """Plans with a model on Amazon Bedrock (see the module docstring).

    Args:
        model_id: the default model; else ``$LOOPWRIGHT_PLANNER_MODEL_ID``, else
            :data:`DEFAULT_MODEL_ID`. :meth:`plan`'s ``model`` overrides it per call.
        client: a boto3 ``bedrock-runtime`` client; default one with standard-mode retries of
            ``max_attempts_per_call`` attempts in ``region_name``.
        max_attempts: answers asked for in all (the first, then corrections), at least 1.
        max_tokens: most tokens of one answer.
    """

    def __init__(
        self,
        model_id: str | None = None,
        *,
        client: Any | None = None,
        region_name: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS_ANSWERS,
        max_attempts_per_call: int = DEFAULT_MAX_ATTEMPTS,
        max_tokens: int = DEFAULT_MAX_TOKENS,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.model_id = model_id or os.environ.get(MODEL_ENV) or DEFAULT_MODEL_ID
        self.max_attempts = max_attempts
        self.max_tokens = max_tokens
        self._client: Any = (
            client
            if client is not None
            else boto3.client(
                "bedrock-runtime", region_name=region_name, config=retry_config(max_attempts_per_call)
            )
        )

    def system_prompt(self) -> str:
        """The system prompt: the rules and the PlanDraft JSON schema."""
        return _RULES.format(schema=json.dumps(PlanDraft.model_json_schema(), separators=(",", ":")))

    def plan(self, packet: InspectionPacket, *, model: str | None = None) -> PlanDraft:
        """A valid draft for ``packet`` from the model ``model`` (default :attr:`model_id`).

        Raises :class:`PlanGenerationError` when every answer was invalid (the last error is in
        the message) or Bedrock failed.
        """
        model_id = model or self.model_id
        messages: list[dict[str, Any]] = [
            {"role": "user", "content": [{"text": _user_message(packet)}]},
        ]
        problem = ""
        for attempt in range(1, self.max_attempts + 1):
            answer, stop_reason = self._converse(model_id, messages)
            try:
                return _draft_from_answer(answer, stop_reason, packet)
            except PlanValidationError as exc:
                problem = str(exc)
            messages += [
                {"role": "assistant", "content": [{"text": answer or "(empty answer)"}]},
                {
                    "role": "user",
                    "content": [
                        {
                            "text": f"That answer is not a valid plan: {problem}\n"
                            f"Answer again with the whole corrected JSON object only "
                            f"(attempt {attempt + 1} of {self.max_attempts})."
                        }
                    ],
                },
            ]
        raise PlanGenerationError(
            f"model {model_id} gave no valid plan in {self.max_attempts} answers; the last one: {problem}"
        )

    def _converse(self, model_id: str, messages: list[dict[str, Any]]) -> tuple[str, str]:
        """(text of the answer, stop reason) of one Converse call."""
        try:
            response = self._client.converse(
                modelId=model_id,
                system=[{"text": self.system_prompt()}],
                messages=messages,
                inferenceConfig={"maxTokens": self.max_tokens, "temperature": 0.0},
            )
        except (ClientError, BotoCoreError) as exc:
            raise PlanGenerationError(
                str(domain_error(exc, f"asking Bedrock model {model_id} for a plan"))
            ) from exc
        blocks = response.get("output", {}).get("message", {}).get("content", [])
        text = "".join(str(block.get("text", "")) for block in blocks if "text" in block)
        return text, str(response.get("stopReason", ""))


def _user_message(packet: InspectionPacket) -> str:
    return (
        "Inspection packet (JSON):\n"
        + packet.model_dump_json(exclude={"workspace"})
        + "\n\nAnswer with the plan's JSON object."
    )


def _json_object(answer: str, stop_reason: str) -> Any:
    """The JSON object in ``answer`` (a code fence or text around it is tolerated)."""
    if stop_reason == "max_tokens":
        raise PlanValidationError("(answer)", "the answer was cut at the token limit; give a shorter plan")
    start, end = answer.find("{"), answer.rfind("}")
    if start < 0 or end < start:
        raise PlanValidationError("(answer)", "no JSON object found; answer with the JSON object only")
    try:
        return json.loads(answer[start : end + 1])
    except json.JSONDecodeError as exc:
        raise PlanValidationError("(answer)", f"not valid JSON: {exc.msg} at character {exc.pos}") from exc


def _draft_from_answer(answer: str, stop_reason: str, packet: InspectionPacket) -> PlanDraft:
    """The answer as a valid draft with the inherited defaults. Raises PlanValidationError."""
    draft = parse_draft(_json_object(answer, stop_reason))
    _check_model_choices(draft, packet)
    inherited = {
        k: v for k, v in packet.loop_config.model_dump(mode="json").items() if k not in _NOT_INHERITED
    }
    draft = draft.model_copy(update={"defaults": {**inherited, **draft.defaults}})
    if not draft.goal:
        draft = draft.model_copy(update={"goal": packet.goal})
    validate_draft(draft, packet.project)
    return draft


def _check_model_choices(draft: PlanDraft, packet: InspectionPacket) -> None:
    """Refuse what a model may not choose (module docstring): the agent, the repository, a
    command that is not one of the inspected loop's conditions."""
    allowed = {(c.type, tuple(c.command or ())) for c in packet.loop_config.exit_conditions}
    places: list[tuple[str, dict[str, Any]]] = [("defaults", draft.defaults)]
    places += [(f"tasks.{i}.loop", task.loop) for i, task in enumerate(draft.tasks)]
    for where, fields in places:
        for name in INHERITED_ONLY:
            if name in fields:
                raise PlanValidationError(f"{where}.{name}", "remove it: it comes from the inspected loop")
        for index, raw in enumerate(fields.get("exit_conditions") or []):
            _check_condition(f"{where}.exit_conditions.{index}", raw, allowed)
    for index, gate in enumerate(draft.gates):
        _check_condition(f"gates.{index}", gate.model_dump(), allowed)


def _check_condition(where: str, raw: Any, allowed: set[tuple[Any, tuple[str, ...]]]) -> None:
    try:
        condition = ExitConditionConfig.model_validate({k: v for k, v in dict(raw).items() if k != "name"})
    except (TypeError, ValueError):
        return  # not a valid condition: validate_draft names the problem
    if condition.command is None or (condition.type, tuple(condition.command)) in allowed:
        return
    known = ", ".join(
        f"{t.value} {' '.join(c) if c else '(default command)'}" for t, c in sorted(allowed, key=str)
    )
    raise PlanValidationError(
        f"{where}.command",
        f"{' '.join(condition.command)!r} is not an exit condition of the inspected loop; use one of: "
        f"{known}, or a built-in type without a command",
    )
