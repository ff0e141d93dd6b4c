"""Run a loop through the SYNTHESIZED state machine, locally: moto executes the ASL, the real
handlers in ``functions/<name>/handler.py`` run in this process with the local adapters.

Pieces:

- :func:`synthesize_template`: the CDK stack's CloudFormation template (stub layer) with the
  ``steps`` or ``compact`` state machine (:data:`STATE_MACHINES`), cached under ``<repo>/build/``
  by the variant and a hash of ``app.py``, ``infrastructure/``, ``policies/`` and ``functions/``
  (a synth takes about 8 s; a cached one about 1 ms).
- :class:`LocalStepFunctions`: ``mock_aws`` with moto's ASL interpreter on; moto's Lambda invoke
  (Docker only) replaced by a local call of the handler; the state machine created from the
  template's ``DefinitionString`` with its intrinsic functions resolved to moto ARNs.
- :func:`execute_loop` / :func:`run_loop`: create the loop as ``start_loop`` does, start
  ``<loop_id>-g0``, follow the continue-as-new executions (``-g1``, ...) to the end.

Only moto's gaps and slow paths are worked around here (each patch says which); nothing of the
definition is changed. The slow paths, found with py-spy: polling ``DescribeExecution`` every
5 ms through botocore (moto serialises each answer), a new boto3 client for every task, every
Lambda invoke going through botocore and moto's Lambda API, jsonpath_ng building its parser for
every JSONPath, ``GetExecutionHistory`` serialising 20,000 events; and, with
``idempotency="memory"``, moto's DynamoDB for the steps' idempotency records. A no-op iteration
(a Python agent, ``false`` as the check, on a shared 2-core VM) went from 170-460 ms to 20-45 ms
with the idempotency records in memory, 130-250 ms with them in moto's DynamoDB (each step's
PutItem and UpdateItem cost moto about 10 ms); ``tests/integration/test_stepfunctions_long.py``
prints its figure.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Literal, cast
from unittest import mock

import boto3
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import STATUS_CONSTANTS, DataRecord
from moto import mock_aws
from moto.awslambda.models import LambdaFunction
from moto.core.config import DefaultConfig
from moto.stepfunctions.exceptions import ExecutionDoesNotExist
from moto.stepfunctions.parser.asl.component.common.path import result_path as moto_result_path
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_sfn as moto_sfn_task,
)
from moto.stepfunctions.parser.asl.utils import boto_client as moto_boto_client
from moto.stepfunctions.parser.asl.utils import json_path as moto_json_path
from moto.stepfunctions.parser.models import stepfunctions_parser_backends

from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.cloud import idempotency, runtime
from loopwright.cloud.start import execution_name
from loopwright.cloud.steps import CloudPorts, start_step
from loopwright.engine.framework import LoopFramework
from loopwright.exceptions import ConfigError
from loopwright.models import LoopConfig, LoopResult, StepInput, StepOutput

#: Repository root (this file is ``<root>/layers/loopwright/engine/stepfunctions.py``).
REPO_ROOT = Path(__file__).resolve().parents[3]
#: What the synthesized template depends on: the CDK app and, since ``infrastructure/`` imports
#: names and limits from it, the package (the stub layer itself does not depend on the package).
TEMPLATE_SOURCES = ("app.py", "cdk.json", "infrastructure", "policies", "functions", "layers/loopwright")
STACK_NAME = "Loopwright"
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
#: A Lambda event (JSON object) and context -> the handler's result.
Handler = Callable[[Any, Any], Any]
#: moto's ASL interpreter (a port of LocalStack's) runs executions only with this config.
MOTO_CONFIG: DefaultConfig = {"stepfunctions": {"execute_state_machine": True}}
#: The state machine variants (CDK context :data:`STATE_MACHINE_CONTEXT`,
#: ``infrastructure/compact_state_machine.py``): one Lambda per step, or one per iteration.
STATE_MACHINES = ("steps", "compact")
STATE_MACHINE_CONTEXT = "loopwright:stateMachine"
#: Environment variable choosing the variant when a caller gives none (``loopwright run --engine
#: stepfunctions``); unset: ``steps``.
STATE_MACHINE_ENV = "LOOPWRIGHT_STATE_MACHINE"
#: The moto idempotency table and schedule group (``IDEMPOTENCY_TABLE_NAME``, ``SCHEDULE_GROUP_NAME``).
IDEMPOTENCY_TABLE = "loopwright-idempotency"
SCHEDULE_GROUP = "loopwright-local"
#: moto's Lambda Invoke answers ``Function.ResponseSizeTooLarge`` above this many bytes (its
#: ``sys.getsizeof`` of the payload; AWS Lambda quotas: 6 MB synchronous response).
MOTO_RESPONSE_SIZE_LIMIT = 6_000_000

_SYNTH_SCRIPT = """
import os, sys
from app import build_app
app = build_app(sys.argv[1])
try:
    app.synth()
except RuntimeError as exc:  # cdk-nag findings fail synth after the template is written
    print(exc, file=sys.stderr)
"""


# ----------------------------------------------------------------------------- synth
def _sources_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for name in TEMPLATE_SOURCES:
        base = root / name
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for path in files:
            if "__pycache__" in path.parts:
                continue
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def state_machine_variant(value: str | None = None) -> str:
    """``value``, or :data:`STATE_MACHINE_ENV`'s value, or ``steps``; checked against
    :data:`STATE_MACHINES`. Raises :class:`ConfigError` naming where the bad value came from."""
    source = "state_machine" if value is not None else STATE_MACHINE_ENV
    variant = value if value is not None else os.environ.get(STATE_MACHINE_ENV) or "steps"
    if variant not in STATE_MACHINES:
        raise ConfigError(f"{source}: {variant!r} is not one of {', '.join(STATE_MACHINES)}")
    return variant


def synthesize_template(
    cache_dir: Path | None = None, *, root: Path = REPO_ROOT, state_machine: str | None = None
) -> dict[str, Any]:
    """The ``Loopwright`` stack's template (stub layer) as a dict, with the ``state_machine``
    variant (:func:`state_machine_variant`), from
    ``<cache_dir>/stepfunctions-template-<variant>-<hash>.json`` when the sources are unchanged,
    else from a synth (``python -c build_app(...)`` in ``root``, about 8 s, the variant passed as
    CDK context in ``CDK_CONTEXT_JSON``) that is then cached.

    ``cache_dir`` defaults to ``<root>/build`` (gitignored). Raises :class:`ConfigError` for an
    unknown variant, and when the synth writes no template (its stderr is in the message).
    """
    variant = state_machine_variant(state_machine)
    cache = cache_dir or root / "build"
    cached = cache / f"stepfunctions-template-{variant}-{_sources_hash(root)}.json"
    if cached.is_file():
        template: dict[str, Any] = json.loads(cached.read_text())
        return template
    env = {
        **os.environ,
        "LOOPWRIGHT_CDK_LAYER": "stub",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        "CDK_CONTEXT_JSON": json.dumps(
            {**json.loads(os.environ.get("CDK_CONTEXT_JSON") or "{}"), STATE_MACHINE_CONTEXT: variant}
        ),
    }
    env.pop("CDK_OUTDIR", None)
    with tempfile.TemporaryDirectory(prefix="loopwright-synth-") as outdir:
        proc = subprocess.run(  # our own interpreter and script
            [sys.executable, "-c", _SYNTH_SCRIPT, outdir],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        produced = Path(outdir) / f"{STACK_NAME}.template.json"
        if not produced.is_file():
            raise ConfigError(f"CDK synth wrote no template: {proc.stderr.strip()[-2000:]}")
        text = produced.read_text()
    cache.mkdir(parents=True, exist_ok=True)
    cached.write_text(text)
    template = json.loads(text)
    return template


# ----------------------------------------------------------------------------- intrinsics
def resolve_intrinsics(node: Any, refs: Mapping[str, str], arns: Mapping[str, str]) -> Any:
    """``node`` with ``Fn::Join``, ``Fn::GetAtt [id, "Arn"]`` and ``Ref`` replaced.

    ``refs``: logical id or pseudo parameter -> value; ``arns``: logical id -> ARN. Raises
    :class:`ConfigError` naming any other intrinsic function or unknown reference.
    """
    if isinstance(node, list):
        return [resolve_intrinsics(item, refs, arns) for item in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        (key, value), *_ = node.items()
        if key == "Fn::Join":
            separator, parts = value
            return separator.join(str(resolve_intrinsics(p, refs, arns)) for p in parts)
        if key == "Fn::GetAtt":
            logical_id, attribute = value if isinstance(value, list) else value.split(".", 1)
            if attribute != "Arn" or logical_id not in arns:
                raise ConfigError(f"cannot resolve Fn::GetAtt {logical_id}.{attribute}")
            return arns[logical_id]
        if key == "Ref":
            if value not in refs:
                raise ConfigError(f"cannot resolve Ref {value}")
            return refs[value]
        if key.startswith("Fn::"):
            raise ConfigError(f"intrinsic function {key} is not supported locally")
    return {k: resolve_intrinsics(v, refs, arns) for k, v in node.items()}


# ----------------------------------------------------------------------------- Lambda
@dataclass(frozen=True)
class LambdaContext:
    """The attributes of a Lambda context that Powertools reads."""

    function_name: str
    invoked_function_arn: str
    aws_request_id: str
    memory_limit_in_mb: int = 512


def load_handler(name: str, root: Path = REPO_ROOT) -> Handler:
    """``functions/<name>/handler.py``'s ``handler``, imported as module ``loopwright_fn_<name>``."""
    path = root / "functions" / name / "handler.py"
    spec = importlib.util.spec_from_file_location(f"loopwright_fn_{name}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"no handler at {path}")
    module: ModuleType = importlib.util.module_from_spec(spec)
    # Registered first: pydantic resolves a handler model's postponed annotations through it.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    handler: Handler = module.handler
    return handler


def _handler_folder(logical_id: str, resource: Mapping[str, Any]) -> str | None:
    """The ``functions/<name>`` folder of a function: from its description
    ``... (functions/<name>/handler.py)`` (``infrastructure/functions.py``)."""
    description = str(resource.get("Properties", {}).get("Description", ""))
    marker = "(functions/"
    if marker in description:
        return description.split(marker, 1)[1].split("/", 1)[0]
    return None


@dataclass
class ExecutionSummary:
    """One execution: its name, final status, history event count and wall time (seconds)."""

    name: str
    status: str
    events: int
    seconds: float
    output: dict[str, Any] | None = None


@dataclass
class StepFunctionsRun:
    """A loop run through the state machine: its result and every execution, in order."""

    result: LoopResult
    executions: list[ExecutionSummary] = field(default_factory=list)

    @property
    def largest_execution_events(self) -> int:
        """The largest execution's history event count."""
        return max((e.events for e in self.executions), default=0)


class LocalStepFunctions:
    """moto (with ASL execution) + the synthesized state machine + local handlers.

    ``template``: from :func:`synthesize_template`. ``state_dir``: ``LOOPWRIGHT_STATE_DIR`` of
    the handlers. ``handlers``: function folder name -> handler replacing the real one (tests).
    ``idempotency``: where the steps' Powertools Idempotency records go: ``dynamodb`` (moto's
    table ``IDEMPOTENCY_TABLE``, as in AWS) or ``memory`` (:class:`MemoryPersistenceLayer`, the
    same records and rules without moto's DynamoDB, about 4 times faster for a long loop). Use as
    a context manager; :attr:`state_machine_arn` is set inside.
    """

    def __init__(
        self,
        template: Mapping[str, Any],
        state_dir: Path,
        *,
        handlers: Mapping[str, Handler] | None = None,
        root: Path = REPO_ROOT,
        idempotency: Literal["dynamodb", "memory"] = "dynamodb",
    ) -> None:
        self._template = template
        self._idempotency = idempotency
        self._state_dir = state_dir
        self._overrides = dict(handlers or {})
        self._root = root
        self._handlers: dict[str, Handler] = {}
        self._names_by_arn: dict[str, str] = {}
        self._stack = contextlib.ExitStack()
        self.state_machine_arn = ""
        self.invocations: list[str] = []
        self._client: Any = None

    # -- context manager
    def __enter__(self) -> LocalStepFunctions:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.close()
        runtime.ports.cache_clear()

    @property
    def client(self) -> Any:
        """A boto3 Step Functions client on the mock."""
        return self._client

    def _start(self) -> None:
        self._stack.enter_context(_environ(self._environment()))
        self._stack.enter_context(mock_aws(config=MOTO_CONFIG))
        self._stack.enter_context(mock.patch.object(LambdaFunction, "_invoke_lambda", self._patched_invoke()))
        service = moto_sfn_task.StateTaskServiceSfn
        self._stack.enter_context(
            mock.patch.object(service, "_normalise_parameters", _boto_cased(service._normalise_parameters))
        )
        # Speed only: a loop function's handler called without botocore (see _direct_invoke).
        direct = self._direct_invoke(lambda_eval_utils._invoke_lambda_function)
        self._stack.enter_context(mock.patch.object(lambda_eval_utils, "_invoke_lambda_function", direct))
        # Speed only: one boto3 client per service for every task (see _reused_clients).
        reused = _reused_clients(moto_boto_client.boto_client_for)
        for module in (lambda_eval_utils, moto_sfn_task):
            self._stack.enter_context(mock.patch.object(module, "boto_client_for", reused))
        # Speed only: each JSONPath parsed once (jsonpath_ng builds its parser on every parse).
        for module in (moto_json_path, moto_result_path):
            self._stack.enter_context(
                mock.patch.object(module, "parse", functools.lru_cache(maxsize=512)(module.parse))
            )
        if self._idempotency == "memory":
            self._stack.enter_context(
                mock.patch.object(
                    idempotency, "idempotency_store", InMemoryIdempotency(idempotency.idempotency_store)
                )
            )
        runtime.ports.cache_clear()
        self._stack.callback(runtime.ports.cache_clear)
        role_arn = self._create_role()
        self._create_stores()
        arns = self._create_functions(role_arn)
        refs = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT_ID}
        refs["AWS::URLSuffix"] = "amazonaws.com"
        machines = {  # the loop's (the template also holds PlanDispatch, see engine/plan_stepfunctions.py)
            k: m
            for k, m in self._resources("AWS::StepFunctions::StateMachine").items()
            if m["Properties"].get("StateMachineName") == f"{STACK_NAME}-loop"
        }
        if len(machines) != 1:
            raise ConfigError(f"expected one loop state machine in the template, found {len(machines)}")
        (machine,) = machines.values()
        props = machine["Properties"]
        definition = resolve_intrinsics(props["DefinitionString"], refs, arns)
        self._client = boto3.client("stepfunctions", region_name=REGION)
        created = self._client.create_state_machine(
            name=props.get("StateMachineName", f"{STACK_NAME}-loop"),
            definition=definition,
            roleArn=role_arn,
            type=props.get("StateMachineType", "STANDARD"),
        )
        self.state_machine_arn = created["stateMachineArn"]
        self._stack.enter_context(_environ({"STATE_MACHINE_ARN": self.state_machine_arn}))  # start_loop's

    def _environment(self) -> dict[str, str]:
        return {
            "LOOPWRIGHT_ADAPTERS": "local",
            "LOOPWRIGHT_STATE_DIR": str(self._state_dir),
            "POWERTOOLS_SERVICE_NAME": "loopwright",
            "POWERTOOLS_METRICS_NAMESPACE": "Loopwright",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "AWS_DEFAULT_REGION": REGION,
            "IDEMPOTENCY_TABLE_NAME": IDEMPOTENCY_TABLE,
            "SCHEDULE_GROUP_NAME": SCHEDULE_GROUP,
            "SCHEDULER_ROLE_ARN": f"arn:aws:iam::{ACCOUNT_ID}:role/loopwright-local",
            "RESUME_FUNCTION_ARN": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{STACK_NAME}-start_loop",
        }

    def _create_stores(self) -> None:
        """The idempotency table and the schedule group named in the handlers' environment."""
        idempotency.idempotency_store.cache_clear()  # a cached store's client may be an earlier mock's
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(**idempotency.create_table_request(IDEMPOTENCY_TABLE))
        boto3.client("scheduler", region_name=REGION).create_schedule_group(Name=SCHEDULE_GROUP)

    def _resources(self, kind: str) -> dict[str, dict[str, Any]]:
        resources: dict[str, dict[str, Any]] = self._template["Resources"]
        return {k: r for k, r in resources.items() if r["Type"] == kind}

    def _create_role(self) -> str:
        iam = boto3.client("iam", region_name=REGION)
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": ["states.amazonaws.com", "lambda.amazonaws.com"]},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        role = iam.create_role(RoleName="loopwright-local", AssumeRolePolicyDocument=json.dumps(trust))
        arn: str = role["Role"]["Arn"]
        return arn

    def _create_functions(self, role_arn: str) -> dict[str, str]:
        client = boto3.client("lambda", region_name=REGION)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
        arns: dict[str, str] = {}
        for logical_id, resource in self._resources("AWS::Lambda::Function").items():
            folder = _handler_folder(logical_id, resource)
            if folder is None:
                continue  # not a loop function (e.g. a CDK custom resource provider)
            name = f"{STACK_NAME}-{folder}"
            known = next((arn for arn, known in self._names_by_arn.items() if known == name), None)
            if known is not None:  # one code, several functions (e.g. the dashboard's modes)
                arns[logical_id] = known
                continue
            created = client.create_function(
                FunctionName=name,
                Runtime="python3.12",
                Role=role_arn,
                Handler="handler.handler",
                Code={"ZipFile": buffer.getvalue()},
            )
            arns[logical_id] = created["FunctionArn"]
            self._names_by_arn[created["FunctionArn"]] = name
            self._handlers[name] = self._overrides.get(folder) or load_handler(folder, self._root)
        return arns

    def _call(self, name: str, arn: str, event: Any) -> tuple[str, bool, str]:
        """Run function ``name``'s handler as the Lambda runtime does: ``(payload JSON, errored,
        logs)``, any exception of the handler being a function error."""
        self.invocations.append(name)
        context = LambdaContext(name, arn, f"req-{len(self.invocations)}")
        try:
            result = self._handlers[name](event if event is not None else {}, context)
        # The Lambda runtime turns any exception of a handler into a function error.
        except Exception as exc:  # re-raised by the ASL as the task's error
            error = {"errorMessage": str(exc), "errorType": type(exc).__name__}
            return json.dumps(error), True, traceback.format_exc()
        return json.dumps(result), False, ""

    def _patched_invoke(self) -> Callable[..., tuple[str, bool, str]]:
        """moto's ``LambdaFunction._invoke_lambda`` (Docker only) replaced by :meth:`_call`."""

        def invoke(function: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
            return self._call(function.function_name, function.function_arn, event)

        return invoke

    def _direct_invoke(self, through_moto: Callable[..., Any]) -> Callable[..., Any]:
        """moto's ``lambda_eval_utils._invoke_lambda_function(parameters, region,
        state_credentials)`` -> ``Invoke``'s response with ``Payload`` parsed, calling a loop
        function's handler directly instead of through botocore and moto's Lambda API (request
        signing, routing and serialisation took more time than the handlers).

        The response is the one that path gives: ``StatusCode`` 200, ``FunctionError``
        ``Handled`` when the handler raised, and moto's ``Function.ResponseSizeTooLarge``
        ``Unhandled`` error above its payload limit. Any other function, or parameters other than
        ``FunctionName`` and ``Payload``, still go through ``through_moto``."""

        def invoke(parameters: dict[str, Any], region: str, state_credentials: Any) -> Any:
            name = self._names_by_arn.get(str(parameters.get("FunctionName")))
            if name is None or set(parameters) != {"FunctionName", "Payload"}:
                return through_moto(parameters, region, state_credentials)
            body = parameters["Payload"]
            event = json.loads(body) if body else "{}"
            payload, errored, _ = self._call(name, str(parameters["FunctionName"]), event)
            response: dict[str, Any] = {"StatusCode": 200, "ExecutedVersion": "$LATEST"}
            if errored:
                response["FunctionError"] = "Handled"
            if sys.getsizeof(payload.encode()) > MOTO_RESPONSE_SIZE_LIMIT:
                response["FunctionError"] = "Unhandled"
                payload = json.dumps(
                    {
                        "errorMessage": "Response payload size exceeded maximum allowed payload size "
                        "(6291556 bytes).",
                        "errorType": "Function.ResponseSizeTooLarge",
                    }
                )
            response["Payload"] = json.loads(payload)
            return response

        return invoke

    # -- executions
    def start(self, name: str, step_input: StepInput) -> str:
        """Start execution ``name`` with ``step_input``; its ARN."""
        response = self._client.start_execution(
            stateMachineArn=self.state_machine_arn, name=name, input=step_input.model_dump_json()
        )
        arn: str = response["executionArn"]
        return arn

    def execution_arn(self, name: str) -> str:
        """The ARN of this state machine's execution ``name``."""
        return self.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"

    def _execution(self, name: str) -> Any | None:
        """moto's execution object ``name`` of this state machine (None while it does not exist)."""
        arn = self.execution_arn(name)
        account = arn.split(":")[4]
        try:
            return stepfunctions_parser_backends[account][REGION].describe_execution(arn)
        except ExecutionDoesNotExist:
            return None

    def wait(
        self, name: str, timeout_seconds: float = 600.0, poll_seconds: float = 0.005
    ) -> ExecutionSummary:
        """Wait for execution ``name`` (which may still be starting) to end. Raises
        :class:`TimeoutError` after ``timeout_seconds``.

        The status is read from moto's backend object, not through ``DescribeExecution``: a
        botocore call every few milliseconds (request and response serialised by moto) took
        about a third of the run's CPU from the thread that executes the state machine."""
        started = time.monotonic()
        deadline = started + timeout_seconds
        while True:
            execution = self._execution(name)
            status = execution.exec_status if execution is not None else None
            if status is not None and status.value != "RUNNING":
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {name} still {status or 'STARTING'} after {timeout_seconds} s")
            time.sleep(poll_seconds)
        assert execution is not None  # a status was read from it
        described = execution.to_describe_output()
        output = json.loads(described["output"]) if described.get("output") else None
        return ExecutionSummary(
            name=name,
            status=str(status.value),
            events=len(self.history(self.execution_arn(name))),
            seconds=time.monotonic() - started,
            output=output,
        )

    def history(self, arn: str) -> list[dict[str, Any]]:
        """Every history event of execution ``arn``, oldest first: the events
        ``GetExecutionHistory`` pages through, read from moto's backend (serialising 20,000
        events through botocore took seconds)."""
        account = arn.split(":")[4]
        execution: Any = stepfunctions_parser_backends[account][REGION].describe_execution(arn)
        return [
            {**event, "type": str(getattr(event["type"], "value", event["type"]))}
            for event in execution.to_history_output()["events"]
        ]

    def history_event_count(self, arn: str) -> int:
        """The number of history events of execution ``arn``."""
        return len(self.history(arn))


class MemoryPersistenceLayer(BasePersistenceLayer):
    """Powertools Idempotency records in a dict, with the rule of ``DynamoDBPersistenceLayer``'s
    conditional put: a record is written when no record has its key, or the record's
    ``expiry_timestamp`` (seconds) has passed, or it is ``INPROGRESS`` with an
    ``in_progress_expiry_timestamp`` (milliseconds) that has passed; otherwise the stored record
    is validated against the new one's payload hash and
    ``IdempotencyItemAlreadyExistsError(old_data_record=...)`` is raised, as the DynamoDB layer
    does with the item returned on a failed condition. Everything else (keys, hashing, status,
    expiry, replay) is Powertools' own code in :class:`BasePersistenceLayer`."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Powertools leaves __init__ unannotated
        self.records: dict[str, DataRecord] = {}

    def _get_record(self, idempotency_key: str) -> DataRecord:
        try:
            return self.records[idempotency_key]
        except KeyError as exc:
            raise IdempotencyItemNotFoundError from exc

    def _put_record(self, data_record: DataRecord) -> None:
        old = self.records.get(data_record.idempotency_key)
        now = time.time()
        if (
            old is None
            or old.expiry_timestamp is None
            or old.expiry_timestamp < int(now)
            or (
                old.status == STATUS_CONSTANTS["INPROGRESS"]
                and old.in_progress_expiry_timestamp is not None
                and old.in_progress_expiry_timestamp < int(now * 1000)
            )
        ):
            self.records[data_record.idempotency_key] = data_record
            return
        self._validate_payload(data_payload=data_record, stored_data_record=old)
        self._save_to_cache(data_record=old)
        raise IdempotencyItemAlreadyExistsError(old_data_record=old)

    def _update_record(self, data_record: DataRecord) -> None:
        # UpdateItem SETs response data, expiry, status and payload hash; other attributes stay.
        old = self.records.get(data_record.idempotency_key)
        record = copy.copy(data_record)
        record.in_progress_expiry_timestamp = old.in_progress_expiry_timestamp if old else None
        self.records[data_record.idempotency_key] = record

    def _delete_record(self, data_record: DataRecord) -> None:
        self.records.pop(data_record.idempotency_key, None)


class InMemoryIdempotency:
    """``loopwright.cloud.idempotency.idempotency_store`` with its config and
    :class:`MemoryPersistenceLayer` instead of the DynamoDB layer: one record dict for the whole
    run (as one table is), a layer and a config of its own for each thread (as each Lambda
    container has: Powertools sets a call's key prefix and Lambda context on them);
    ``cache_clear`` clears the original's cache."""

    def __init__(self, store_for: Any) -> None:
        self._store_for = store_for
        self.records: dict[str, DataRecord] = {}
        self._local = threading.local()

    def __call__(self, settings: Any) -> Any:
        stores: dict[Any, Any] = self._local.__dict__.setdefault("stores", {})
        if settings not in stores:
            store = self._store_for(settings)
            if store is None:
                return None
            layer = MemoryPersistenceLayer()
            layer.records = self.records
            # The store calls only the BasePersistenceLayer interface, which this layer implements.
            stores[settings] = idempotency.IdempotencyStore(
                persistence=cast("Any", layer), config=copy.copy(store.config)
            )
        return stores[settings]

    def cache_clear(self) -> None:
        self._store_for.cache_clear()


def _reused_clients(create: Callable[..., Any]) -> Callable[..., Any]:
    """moto's ``boto_client_for(region, service, state_credentials)`` creating each client once.

    moto's ASL interpreter builds a new boto3 client for every Lambda task and every
    ``states:startExecution`` (about 8 ms each, a third of the executing thread's time). The
    function ignores ``state_credentials`` (every client gets the same fixed keys), so one
    client per region and service is the same client; boto3 clients are thread-safe."""
    clients: dict[tuple[str, str], Any] = {}

    def client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        key = (region, service)
        if key not in clients:
            clients[key] = create(region=region, service=service, state_credentials=state_credentials)
        return clients[key]

    return client_for


def _boto_cased(normalise: Callable[..., None]) -> Callable[..., None]:
    """moto 5.2.5 gap: its ``states:startExecution`` integration passes the task's Parameters
    (``Input``, ``Name``, ``StateMachineArn``) to boto3 as they are, and boto3 wants the API's
    member names (``input``, ``name``, ``stateMachineArn``): the call fails with
    ``States.Runtime: 'Input'``. Step Functions maps them; so does this wrapper, after moto's own
    normalisation (which serialises ``Input`` to JSON text)."""

    def wrapped(self: Any, parameters: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        normalise(self, parameters, *args, **kwargs)
        renamed = {key[:1].lower() + key[1:]: value for key, value in parameters.items()}
        parameters.clear()
        parameters.update(renamed)

    return wrapped


@contextlib.contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# ----------------------------------------------------------------------------- loops
def create_loop(config: LoopConfig, workspace: Path, loop_id: str | None = None) -> str:
    """Create the loop (worktree, state) and record LOOP_STARTED as ``start_loop`` does; its id.
    The state lives under ``<workspace>/.loopwright``."""
    framework = LoopFramework(config, workspace=workspace, loop_id=loop_id)
    state = framework.initialize_sync()
    store = SqliteStore(workspace / ".loopwright" / "loopwright.db")
    start_step(StepInput(loop_id=state.loop_id), CloudPorts(store=store))
    return state.loop_id


def execute_loop(
    config: LoopConfig,
    workspace: Path,
    loop_id: str | None = None,
    iterations_per_execution: int | None = None,
    *,
    template: Mapping[str, Any] | None = None,
    handlers: Mapping[str, Handler] | None = None,
    timeout_seconds: float = 600.0,
    idempotency: Literal["dynamodb", "memory"] = "dynamodb",
    state_machine: str | None = None,
) -> StepFunctionsRun:
    """Create the loop, run ``<loop_id>-g0`` and every continue-as-new execution after it until
    the last one ends; the stored loop's :class:`LoopResult` and each execution's summary.

    ``template`` defaults to :func:`synthesize_template` (cached) of the ``state_machine``
    variant (:func:`state_machine_variant`: the argument, else ``LOOPWRIGHT_STATE_MACHINE``, else
    ``steps``). ``handlers`` replace real handlers by function folder name; ``idempotency`` as
    :class:`LocalStepFunctions`. Raises :class:`TimeoutError` when an execution runs longer
    than ``timeout_seconds``.
    """
    workspace = Path(workspace).resolve()
    state_dir = workspace / ".loopwright"
    with LocalStepFunctions(
        template or synthesize_template(state_machine=state_machine),
        state_dir,
        handlers=handlers,
        idempotency=idempotency,
    ) as local:
        loop = create_loop(config, workspace, loop_id)
        step_input = StepInput(loop_id=loop)
        if iterations_per_execution is not None:
            step_input.iterations_per_execution = iterations_per_execution
        name = execution_name(loop, 0)
        local.start(name, step_input)
        executions: list[ExecutionSummary] = []
        while True:
            summary = local.wait(name, timeout_seconds)
            executions.append(summary)
            output = StepOutput.model_validate(summary.output) if summary.output else None
            if summary.status != "SUCCEEDED" or output is None or not output.handover:
                break
            name = execution_name(loop, output.generation)
        state = SqliteStore(state_dir / "loopwright.db").get_state(loop)
    return StepFunctionsRun(result=LoopResult.from_state(state), executions=executions)


def run_loop(
    config: LoopConfig,
    workspace: Path,
    loop_id: str | None = None,
    iterations_per_execution: int | None = None,
) -> LoopResult:
    """:func:`execute_loop`'s result; prints each execution's name, status and history events."""
    run = execute_loop(config, workspace, loop_id, iterations_per_execution)
    for execution in run.executions:
        print(f"{execution.name}: {execution.status}, {execution.events} history events")
    return run.result
