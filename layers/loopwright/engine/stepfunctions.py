"""Run a loop through the SYNTHESIZED state machine, locally: moto executes the ASL, the real
handlers in ``functions/<name>/handler.py`` run in this process with the local adapters.

Pieces:

- :mod:`loopwright.engine.stepfunctions_template`: the CDK stack's CloudFormation template (stub
  layer) with the ``steps`` or ``compact`` state machine, cached under ``<repo>/build/``.
- :class:`LocalStepFunctions` (here): ``mock_aws`` with moto's ASL interpreter on; moto's Lambda
  invoke (Docker only) replaced by a local call of the handler; the state machine created from
  the template's ``DefinitionString`` with its intrinsic functions resolved to moto ARNs.
- :mod:`loopwright.engine.memory_idempotency`: the steps' idempotency records in memory.
- :mod:`loopwright.engine.stepfunctions_aws`: ``adapters="aws"``, the handlers with the AWS
  adapters (DynamoDB and AgentCore Memory on moto; Code Interpreter and Verified Permissions
  played by the caller).
- :mod:`loopwright.engine.stepfunctions_loops`: create a loop as ``start_loop`` does, start
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
import functools
import importlib.util
import io
import json
import os
import sys
import time
import traceback
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Literal
from unittest import mock

import boto3
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

from loopwright.cloud import idempotency, runtime
from loopwright.engine.memory_idempotency import InMemoryIdempotency
from loopwright.engine.stepfunctions_aws import aws_environment, check_caller_environment, create_aws_stores
from loopwright.engine.stepfunctions_template import (
    ACCOUNT_ID,
    REGION,
    REPO_ROOT,
    STACK_NAME,
    resolve_intrinsics,
)
from loopwright.exceptions import ConfigError
from loopwright.models import StepInput

#: A Lambda event (JSON object) and context -> the handler's result.
Handler = Callable[[Any, Any], Any]
#: moto's ASL interpreter (a port of LocalStack's) runs executions only with this config.
MOTO_CONFIG: DefaultConfig = {"stepfunctions": {"execute_state_machine": True}}
#: The moto idempotency table and schedule group (``IDEMPOTENCY_TABLE_NAME``, ``SCHEDULE_GROUP_NAME``).
IDEMPOTENCY_TABLE = "loopwright-idempotency"
SCHEDULE_GROUP = "loopwright-local"
#: moto's Lambda Invoke answers ``Function.ResponseSizeTooLarge`` above this many bytes (its
#: ``sys.getsizeof`` of the payload; AWS Lambda quotas: 6 MB synchronous response).
MOTO_RESPONSE_SIZE_LIMIT = 6_000_000


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


class LocalStepFunctions:
    """moto (with ASL execution) + the synthesized state machine + local handlers.

    ``template``: from :func:`~loopwright.engine.stepfunctions_template.synthesize_template`.
    ``state_dir``: ``LOOPWRIGHT_STATE_DIR`` of the handlers. ``handlers``: function folder name ->
    handler replacing the real one (tests). ``idempotency``: where the steps' Powertools
    Idempotency records go: ``dynamodb`` (moto's table ``IDEMPOTENCY_TABLE``, as in AWS) or
    ``memory`` (:class:`~loopwright.engine.memory_idempotency.MemoryPersistenceLayer`, the same
    records and rules without moto's DynamoDB, about 4 times faster for a long loop).
    ``adapters``: the handlers' ``LOOPWRIGHT_ADAPTERS``: ``local`` (SQLite, subprocess sandbox,
    cedarpy) or ``aws`` (the AWS adapters on moto, :mod:`~loopwright.engine.stepfunctions_aws`;
    ``environment`` must then name the Code Interpreter and policy store the caller plays).
    ``environment``: more environment variables of the handlers. Use as a context manager;
    :attr:`state_machine_arn` is set inside.
    """

    def __init__(
        self,
        template: Mapping[str, Any],
        state_dir: Path,
        *,
        handlers: Mapping[str, Handler] | None = None,
        root: Path = REPO_ROOT,
        idempotency: Literal["dynamodb", "memory"] = "dynamodb",
        adapters: Literal["local", "aws"] = "local",
        environment: Mapping[str, str] | None = None,
    ) -> None:
        self._template = template
        self._adapters = adapters
        self._extra_environment = dict(environment or {})
        if adapters == "aws":
            check_caller_environment(self._extra_environment)
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
        if self._adapters == "aws":
            self._stack.enter_context(_environ(create_aws_stores(self._template)))
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
        environment = {
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
        if self._adapters == "aws":
            environment |= aws_environment()
        return environment | self._extra_environment

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
