"""Names, limits and context keys of the CDK app, in one place.

Durations are :class:`aws_cdk.Duration`; sizes in MiB. Physical names are never fixed here
(two deployments can share an account) except the state machine's, which is derived from the
stack name because the state machine starts executions of itself (continue-as-new).
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs

#: Repository root (this file is ``<root>/infrastructure/constants.py``).
REPO_ROOT = Path(__file__).resolve().parent.parent
#: The installable package copied into the core layer.
PACKAGE_DIR = REPO_ROOT / "layers" / "loopwright"
#: Cedar policies and schema (copied into the layer under ``python/policies``).
POLICIES_DIR = REPO_ROOT / "policies"
#: The Lambda handlers, one folder per function (``functions/<name>/handler.py``).
FUNCTIONS_DIR = REPO_ROOT / "functions"
#: Built layers and the pip cache of the layer's dependencies.
BUILD_DIR = REPO_ROOT / "build"

SERVICE_NAME = "loopwright"
METRICS_NAMESPACE = "Loopwright"
STACK_NAME = "Loopwright"

# ----------------------------------------------------------------------------- context keys
#: ``destroy`` (default: tables, logs and stores are deleted with the stack) or ``retain``.
CTX_REMOVAL_POLICY = "loopwright:removalPolicy"
#: Days AgentCore Memory keeps a checkpoint event (default :data:`DEFAULT_MEMORY_EXPIRY_DAYS`).
CTX_MEMORY_EXPIRY_DAYS = "loopwright:memoryExpiryDays"
#: ``build`` (default: the real layer, see :mod:`infrastructure.layer_build`) or ``stub``.
CTX_LAYER = "loopwright:layer"
#: Environment variable with the same meaning as :data:`CTX_LAYER` (tests set it).
ENV_LAYER = "LOOPWRIGHT_CDK_LAYER"
#: Optional e-mail address subscribed to the alerts topic.
CTX_ALARM_EMAIL = "loopwright:alarmEmail"
#: Context key: the Code Interpreter's network mode, PUBLIC (default) or SANDBOX.
CTX_CODE_INTERPRETER_NETWORK = "loopwright:codeInterpreterNetwork"

#: AgentCore Memory event expiry, days (the API allows 7 to 365).
DEFAULT_MEMORY_EXPIRY_DAYS = 30

# ----------------------------------------------------------------------------- Lambda
LAMBDA_RUNTIME = lambda_.Runtime.PYTHON_3_12
#: Graviton: about 20 % cheaper per GB-second than x86_64 (AWS Lambda pricing).
LAMBDA_ARCHITECTURE = lambda_.Architecture.ARM_64
#: pip platform tag matching :data:`LAMBDA_ARCHITECTURE`.
LAYER_PIP_PLATFORM = "manylinux2014_aarch64"
LAYER_PYTHON_VERSION = "3.12"
LOG_RETENTION = logs.RetentionDays.ONE_MONTH

#: Function name -> (timeout, memory MiB). Iterate runs the agent and evaluate the exit
#: conditions (each condition up to its own ``timeout_seconds``): 15 min, Lambda's maximum.
FUNCTIONS: dict[str, tuple[Duration, int]] = {
    "authorize": (Duration.seconds(30), 512),
    "iterate": (Duration.minutes(15), 1024),
    "checkpoint": (Duration.seconds(60), 512),
    "evaluate": (Duration.minutes(15), 1024),
    "verify": (Duration.seconds(30), 512),
    "decide": (Duration.seconds(60), 512),
    "record_failure": (Duration.seconds(30), 512),
    "start_loop": (Duration.seconds(30), 512),
    "await_human": (Duration.seconds(30), 512),
    "run_iteration": (Duration.minutes(15), 1024),
    "schedule_resume": (Duration.seconds(30), 512),
}

# ----------------------------------------------------------------------------- Step Functions
#: Every task's retry: 2 s, 4 s (backoff 2) with full jitter, 3 attempts in all.
RETRY_INTERVAL = Duration.seconds(2)
RETRY_BACKOFF_RATE = 2.0
RETRY_MAX_ATTEMPTS = 3
#: Errors of the Lambda service itself (not of the handler), retried on every task.
LAMBDA_SERVICE_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Lambda.ClientExecutionTimeoutException",
]
#: How long an execution waits for an operator's SendTaskSuccess before the loop fails.
AWAIT_HUMAN_TIMEOUT = Duration.days(7)
#: Suffix of the state machine's name (``<stack name>-loop``).
STATE_MACHINE_NAME_SUFFIX = "loop"

# ----------------------------------------------------------------------------- API Gateway
API_THROTTLING_RATE_LIMIT = 10  # requests per second
API_THROTTLING_BURST_LIMIT = 20  # requests
#: Every other method's limit (the dashboard's reads): an open loop page polls each of its
#: endpoints every 2 s (0.5 requests per second per method), so 20 per second serves about 40
#: open pages; the burst absorbs a page load (about 6 requests at once) of several operators.
DASHBOARD_THROTTLING_RATE_LIMIT = 20  # requests per second, per method
DASHBOARD_THROTTLING_BURST_LIMIT = 40  # requests
#: Each control and plan POST: a human's click; a script repeating one is slowed down.
CONTROL_THROTTLING_RATE_LIMIT = 2  # requests per second, per method
CONTROL_THROTTLING_BURST_LIMIT = 5  # requests

# ----------------------------------------------------------------------------- EventBridge
GIT_EVENT_SOURCE = "loopwright.git"
GIT_EVENT_DETAIL_TYPE = "push"
#: A ``loopwright.continue`` event continues a paused or limit-ended loop (issue 12.8); the same
#: values as ``loopwright.cloud.continuation.CONTINUE_EVENT_SOURCE`` and ``..._DETAIL_TYPE`` (the
#: handler's side; tests/infrastructure/test_continuation_stack.py checks they agree).
CONTINUE_EVENT_SOURCE = "loopwright.continue"
CONTINUE_EVENT_DETAIL_TYPE = "continue"

# ----------------------------------------------------------------------------- alarms
ALARM_PERIOD = Duration.minutes(5)
