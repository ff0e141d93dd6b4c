"""Run a loop through the SYNTHESIZED state machine, locally: moto executes the ASL, the real
handlers in ``functions/<name>/handler.py`` run in this process with the local adapters.

Pieces:

- :func:`synthesize_template`: the CDK stack's CloudFormation template (stub layer), cached under
  ``<repo>/build/`` by a hash of ``app.py``, ``infrastructure/``, ``policies/`` and ``functions/``
  (a synth takes about 8 s; a cached one about 1 ms).
- :class:`LocalStepFunctions`: ``mock_aws`` with moto's ASL interpreter on; moto's Lambda invoke
  (Docker only) replaced by a local call of the handler; the state machine created from the
  template's ``DefinitionString`` with its intrinsic functions resolved to moto ARNs.
- :func:`execute_loop` / :func:`run_loop`: create the loop as ``start_loop`` does, start
  ``<loop_id>-g0``, follow the continue-as-new executions (``-g1``, ...) to the end.

Only moto's gaps are worked around here; nothing of the definition is changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any
from unittest import mock

import boto3
from moto import mock_aws
from moto.awslambda.models import LambdaFunction
from moto.core.config import DefaultConfig
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_sfn as moto_sfn_task,
)

from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.cloud import runtime
from loopwright.cloud.start import execution_name
from loopwright.cloud.steps import CloudPorts, start_step
from loopwright.engine.framework import LoopFramework
from loopwright.exceptions import ConfigError
from loopwright.models import LoopConfig, LoopResult, StepInput, StepOutput

#: Repository root (this file is ``<root>/layers/loopwright/engine/stepfunctions.py``).
REPO_ROOT = Path(__file__).resolve().parents[3]
#: What the synthesized template depends on (the stub layer does not depend on the package).
TEMPLATE_SOURCES = ("app.py", "cdk.json", "infrastructure", "policies", "functions")
STACK_NAME = "Loopwright"
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
#: A Lambda event (JSON object) and context -> the handler's result.
Handler = Callable[[Any, Any], Any]
#: moto's ASL interpreter (a port of LocalStack's) runs executions only with this config.
MOTO_CONFIG: DefaultConfig = {"stepfunctions": {"execute_state_machine": True}}

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


def synthesize_template(cache_dir: Path | None = None, *, root: Path = REPO_ROOT) -> dict[str, Any]:
    """The ``Loopwright`` stack's template (stub layer) as a dict, from
    ``<cache_dir>/stepfunctions-template-<hash>.json`` when the sources are unchanged, else from a
    synth (``python -c build_app(...)`` in ``root``, about 8 s) that is then cached.

    ``cache_dir`` defaults to ``<root>/build`` (gitignored). Raises :class:`ConfigError` when the
    synth writes no template (its stderr is in the message).
    """
    cache = cache_dir or root / "build"
    cached = cache / f"stepfunctions-template-{_sources_hash(root)}.json"
    if cached.is_file():
        template: dict[str, Any] = json.loads(cached.read_text())
        return template
    env = {
        **os.environ,
        "LOOPWRIGHT_CDK_LAYER": "stub",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
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
    Use as a context manager; :attr:`state_machine_arn` is set inside.
    """

    def __init__(
        self,
        template: Mapping[str, Any],
        state_dir: Path,
        *,
        handlers: Mapping[str, Handler] | None = None,
        root: Path = REPO_ROOT,
    ) -> None:
        self._template = template
        self._state_dir = state_dir
        self._overrides = dict(handlers or {})
        self._root = root
        self._handlers: dict[str, Handler] = {}
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
        runtime.ports.cache_clear()
        self._stack.callback(runtime.ports.cache_clear)
        role_arn = self._create_role()
        arns = self._create_functions(role_arn)
        refs = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT_ID}
        refs["AWS::URLSuffix"] = "amazonaws.com"
        machines = self._resources("AWS::StepFunctions::StateMachine")
        if len(machines) != 1:
            raise ConfigError(f"expected one state machine in the template, found {len(machines)}")
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
        }

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
            created = client.create_function(
                FunctionName=name,
                Runtime="python3.12",
                Role=role_arn,
                Handler="handler.handler",
                Code={"ZipFile": buffer.getvalue()},
            )
            arns[logical_id] = created["FunctionArn"]
            self._handlers[name] = self._overrides.get(folder) or load_handler(folder, self._root)
        return arns

    def _patched_invoke(self) -> Callable[..., tuple[str, bool, str]]:
        handlers = self._handlers
        invocations = self.invocations

        def invoke(function: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
            name = function.function_name
            invocations.append(name)
            context = LambdaContext(name, function.function_arn, f"req-{len(invocations)}")
            try:
                result = handlers[name](event if event is not None else {}, context)
            # The Lambda runtime turns any exception of a handler into a function error.
            except Exception as exc:  # re-raised by the ASL as the task's error
                error = {"errorMessage": str(exc), "errorType": type(exc).__name__}
                return json.dumps(error), True, traceback.format_exc()
            return json.dumps(result), False, ""

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

    def wait(
        self, name: str, timeout_seconds: float = 600.0, poll_seconds: float = 0.005
    ) -> ExecutionSummary:
        """Poll execution ``name`` (which may still be starting) until it ends. Raises
        :class:`TimeoutError` after ``timeout_seconds``."""
        arn = self.execution_arn(name)
        started = time.monotonic()
        deadline = started + timeout_seconds
        while True:
            try:
                described = self._client.describe_execution(executionArn=arn)
            except self._client.exceptions.ExecutionDoesNotExist:
                described = {"status": "STARTING"}
            if described["status"] not in ("RUNNING", "STARTING"):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {name} still {described['status']} after {timeout_seconds} s")
            time.sleep(poll_seconds)
        output = json.loads(described["output"]) if described.get("output") else None
        return ExecutionSummary(
            name=name,
            status=described["status"],
            events=self.history_event_count(arn),
            seconds=time.monotonic() - started,
            output=output,
        )

    def history(self, arn: str) -> list[dict[str, Any]]:
        """Every history event of execution ``arn``, oldest first."""
        events: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
        while True:
            page = self._client.get_execution_history(**kwargs)
            events.extend(page["events"])
            if not page.get("nextToken"):
                return events
            kwargs["nextToken"] = page["nextToken"]

    def history_event_count(self, arn: str) -> int:
        """The number of history events of execution ``arn``."""
        return len(self.history(arn))


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
) -> StepFunctionsRun:
    """Create the loop, run ``<loop_id>-g0`` and every continue-as-new execution after it until
    the last one ends; the stored loop's :class:`LoopResult` and each execution's summary.

    ``template`` defaults to :func:`synthesize_template` (cached). ``handlers`` replace real
    handlers by function folder name. Raises :class:`TimeoutError` when an execution runs longer
    than ``timeout_seconds``.
    """
    workspace = Path(workspace).resolve()
    state_dir = workspace / ".loopwright"
    with LocalStepFunctions(template or synthesize_template(), state_dir, handlers=handlers) as local:
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
