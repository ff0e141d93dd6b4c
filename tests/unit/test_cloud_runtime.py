"""The handlers' runtime: settings from the environment and the ports they select."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from loopwright.adapters.aws.dynamodb_store import DynamoDbStore
from loopwright.adapters.aws.memory_checkpoints import MemoryCheckpointStore
from loopwright.adapters.aws.verified_permissions import VerifiedPermissionsPolicyEngine
from loopwright.adapters.local.sqlite_store import SqliteStore
from loopwright.cloud import runtime
from loopwright.exceptions import ConfigError

AWS_ENV = {
    "LOOPWRIGHT_ADAPTERS": "aws",
    "AWS_REGION": "eu-west-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "LOOPS_TABLE_NAME": "loops",
    "EVENTS_TABLE_NAME": "events",
    "MEMORY_ID": "mem-1",
    "POLICY_STORE_ID": "ps-1",
    "POLICY_MAP": json.dumps({"p-1": {"id": "iteration-limit", "outcome": "ITERATION_LIMIT"}}),
}


def test_aws_settings_select_the_aws_adapters(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    built = runtime._aws_ports(runtime.RuntimeSettings.from_environ())
    assert isinstance(built.store, DynamoDbStore)
    assert isinstance(built.checkpoints, MemoryCheckpointStore)
    assert isinstance(built.policy, VerifiedPermissionsPolicyEngine)


def test_local_settings_select_the_local_adapters(tmp_path: object) -> None:
    settings = runtime.RuntimeSettings.from_environ(
        {"LOOPWRIGHT_ADAPTERS": "local", "LOOPWRIGHT_STATE_DIR": str(tmp_path)}
    )
    assert isinstance(runtime._local_ports(settings).store, SqliteStore)


def test_a_function_without_the_policy_map_gets_no_policy_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    # the stack gives POLICY_MAP only to the functions that ask Cedar (authorize, start_loop...)
    env = {k: v for k, v in AWS_ENV.items() if k != "POLICY_MAP"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    built = runtime._aws_ports(runtime.RuntimeSettings.from_environ(env))
    assert built.policy is None and isinstance(built.store, DynamoDbStore)


@pytest.mark.parametrize(
    ("missing", "message"),
    [("LOOPS_TABLE_NAME", "LOOPS_TABLE_NAME is required"), ("MEMORY_ID", "MEMORY_ID is required")],
)
def test_a_missing_variable_is_named(missing: str, message: str) -> None:
    env = {k: v for k, v in AWS_ENV.items() if k != missing}
    with pytest.raises(ConfigError, match=message):
        runtime._aws_ports(runtime.RuntimeSettings.from_environ(env))


def test_an_unknown_adapter_kind_is_named() -> None:
    with pytest.raises(ConfigError, match="LOOPWRIGHT_ADAPTERS"):
        runtime.RuntimeSettings.from_environ({"LOOPWRIGHT_ADAPTERS": "gcp"})


def test_the_aws_handlers_import_chain_needs_no_cedarpy() -> None:
    # The layer ships no cedarpy (Verified Permissions decides in AWS) and no psutil (only the
    # local sandbox's process ledger uses it).
    code = (
        "import sys\n"
        "import loopwright.adapters.aws.verified_permissions, loopwright.cloud.runtime\n"
        "import loopwright.cloud.steps, loopwright.cloud.start, loopwright.adapters.aws.runtime_agent\n"
        "print('cedarpy' in sys.modules, 'loopwright.adapters.local.processes' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False False"


def test_metrics_have_a_namespace_even_when_imported_before_the_environment_is_set() -> None:
    # A local state-machine run imports the handlers' runtime before it sets POWERTOOLS_*;
    # without a namespace, Powertools' automatic flush at 100 metrics fails the loop.
    env = {k: v for k, v in os.environ.items() if k != "POWERTOOLS_METRICS_NAMESPACE"}
    code = "from loopwright.cloud.observability import metrics; print(metrics.namespace)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert done.stdout.strip() == "loopwright"


def test_poll_bounds_the_wrong_way_round_are_named() -> None:
    env = {**AWS_ENV, "LOOPWRIGHT_POLL_MIN_SECONDS": "60", "LOOPWRIGHT_POLL_MAX_SECONDS": "30"}
    with pytest.raises(
        ConfigError, match="LOOPWRIGHT_POLL_MAX_SECONDS \\(30\\) is below LOOPWRIGHT_POLL_MIN_SECONDS"
    ):
        runtime.RuntimeSettings.from_environ(env)
    settings = runtime.RuntimeSettings.from_environ({**env, "LOOPWRIGHT_POLL_MAX_SECONDS": "60"})
    assert (settings.poll_min_seconds, settings.poll_max_seconds) == (60, 60)
