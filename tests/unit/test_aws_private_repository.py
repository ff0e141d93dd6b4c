"""Private repositories (issue 12, point 4): the HTTPS token comes from AWS Secrets Manager (moto)
and reaches git in the loop's Code Interpreter session through a credential helper reading a file
that exists only during the git call; the token is in no event, state, log line or command line.

The played session rewrites the https:// URL to a local bare repository (git's ``insteadOf``), so
the loop clones and pushes for real; the helper itself is checked with ``git credential fill``."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from pydantic import ValidationError

from loopwright.adapters.aws.code_interpreter_sandbox import CodeInterpreterSandbox, CodeInterpreterSessions
from loopwright.adapters.aws.git_credentials import SecretTokens, SessionGitCredentials
from loopwright.cloud import runtime_aws as runtime
from loopwright.config_loader import format_validation_error
from loopwright.exceptions import LoopFrameworkError, WorkspaceError
from loopwright.models import LoopConfig, LoopOutcome, LoopState, RepositoryCredentials
from tests.fakes import MemoryStore
from tests.unit.aws_loop_driver import Driver, play_code_interpreter
from tests.unit.aws_session_fake import SessionService, git, make_remote

TOKEN = "ghp_s3cr3tT0kenValue0123456789"
URL = "https://git.example.com/acme/private.git"


@pytest.fixture
def secret_arn(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        arn = client.create_secret(Name="loopwright/github", SecretString=json.dumps({"token": TOKEN}))["ARN"]
        runtime.secret_tokens.cache_clear()
        yield str(arn)
        runtime.secret_tokens.cache_clear()


def _session_env(tmp_path: Path, remote: Path) -> dict[str, str]:
    """The session's git sends URL to the local bare repository ``remote``."""
    config = tmp_path / "gitconfig"
    config.write_text(f'[url "file://{remote}"]\n\tinsteadOf = {URL}\n')
    return {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GIT_CONFIG_GLOBAL": str(config)}


def test_a_private_repository_loop_reads_its_secret_and_the_token_goes_nowhere_else(
    tmp_path: Path, secret_arn: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # Given a loop on a private repository whose token is in Secrets Manager
    remote = make_remote(tmp_path, {"README.md": "hi\n"})
    service = SessionService(tmp_path / "sessions", env=_session_env(tmp_path, remote))
    play_code_interpreter(monkeypatch, service)
    config = LoopConfig.model_validate(
        {
            "goal": "write done.txt",
            "agent": {
                "kind": "command",
                "command": [sys.executable, "-c", "open('done.txt', 'w').write('ok')"],
                "timeout_seconds": 60,
            },
            "exit_conditions": [{"type": "CUSTOM", "name": "done", "command": "test -f done.txt"}],
            "repository": {"url": URL, "push": True, "credentials": {"secret_arn": secret_arn}},
        }
    )
    store = MemoryStore()
    store.create_loop(LoopState(loop_id="l1", config=config))
    # When it runs through the cloud steps
    out = Driver(store, service).run("l1")
    # Then it completed, its work pushed to the private remote
    assert out.outcome is LoopOutcome.CONDITIONS_MET
    assert git("show", "loopwright/l1:done.txt", cwd=remote) == "ok"
    # The token reached the session only in writeFiles requests, one per remote git call
    writes = [c for c in service.calls() if c["name"] == "writeFiles" and TOKEN in json.dumps(c)]
    remote_calls = [line for line in service.commands() if " clone " in line or " push " in line]
    assert len(writes) == len(remote_calls) >= 2
    # ... and it is in no command line, event, state or log line; no token file is left behind
    assert not [line for line in service.commands() if TOKEN in line]
    assert all("credential.helper=" in line for line in remote_calls)
    assert TOKEN not in json.dumps([e.model_dump(mode="json") for e in store.events])
    assert TOKEN not in store.get_state("l1").model_dump_json() and secret_arn in store.states["l1"]
    assert TOKEN not in caplog.text
    leftovers = list((tmp_path / "sessions").rglob(".loopwright/credentials/*"))
    assert leftovers == []


def test_the_helper_answers_git_with_the_token_from_a_0600_file(tmp_path: Path, secret_arn: str) -> None:
    service = SessionService(tmp_path / "sessions")
    sandbox = CodeInterpreterSandbox(
        "us-east-1",
        interpreter=service,
        command_client=service,
        sessions=CodeInterpreterSessions("us-east-1", client=service),
    )
    credentials = SessionGitCredentials(
        sandbox, RepositoryCredentials(secret_arn=secret_arn, username="oauth2"), SecretTokens("us-east-1")
    )
    with credentials.git_options() as options:
        files = list((tmp_path / "sessions").rglob(".loopwright/credentials/*"))
        assert len(files) == 1 and files[0].stat().st_mode & 0o777 == 0o600
        answer = subprocess.run(
            ["git", *options, "credential", "fill"],
            input="protocol=https\nhost=git.example.com\n\n",
            capture_output=True,
            text=True,
            check=True,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GIT_TERMINAL_PROMPT": "0"},
        ).stdout
    assert f"username=oauth2\npassword={TOKEN}\n" in answer
    assert TOKEN not in " ".join(options)
    assert list((tmp_path / "sessions").rglob(".loopwright/credentials/*")) == []  # removed after use


def test_secret_errors_name_the_secret_never_a_value(tmp_path: Path, secret_arn: str) -> None:
    client = boto3.client("secretsmanager", region_name="us-east-1")
    missing = secret_arn.replace("github", "gone")
    with pytest.raises(LoopFrameworkError, match=r"cannot read the repository token from secret .*gone"):
        SecretTokens("us-east-1").token(missing)
    empty = client.create_secret(Name="loopwright/empty", SecretString=json.dumps({"user": "x"}))["ARN"]
    with pytest.raises(LoopFrameworkError, match=r'holds no repository token: .*JSON \{"token"'):
        SecretTokens("us-east-1").token(empty)
    plain = client.create_secret(Name="loopwright/plain", SecretString=f"{TOKEN}\n")["ARN"]
    assert SecretTokens("us-east-1").token(plain) == TOKEN
    # A token that cannot be read fails the git call as a workspace error, naming the secret
    service = SessionService(tmp_path / "sessions")
    sandbox = CodeInterpreterSandbox("us-east-1", interpreter=service, command_client=service)
    broken = SessionGitCredentials(
        sandbox, RepositoryCredentials(secret_arn=missing), SecretTokens("us-east-1")
    )
    with pytest.raises(WorkspaceError, match="gone"), broken.git_options():
        pass


ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:loopwright/github-AbCdEf"


@pytest.mark.parametrize(
    ("repository", "expected"),
    [
        (
            {"url": "git@github.com:o/r.git", "credentials": {"secret_arn": ARN}},
            "repository: Value error, credentials: an HTTPS token works only with an https:// URL",
        ),
        (
            {"url": URL, "credentials": {"secret_arn": "arn:aws:s3:::bucket"}},
            "repository.credentials.secret_arn: Value error, must be the ARN of a Secrets Manager secret",
        ),
        (
            {
                "url": URL,
                "credentials": {"connection_arn": "arn:aws:codeconnections:us-east-1:1:connection/x"},
            },
            "repository.credentials: Value error, connection_arn: AWS CodeConnections gives no API",
        ),
        (
            {"url": URL, "credentials": {"secret_arn": ARN, "username": "a\nb"}},
            "repository.credentials.username: Value error, must be 1 to 256 letters",
        ),
        (
            {"url": URL, "credentials": {"secret_arn": ARN, "token": TOKEN}},
            "repository.credentials.token: unknown field",
        ),
    ],
)
def test_bad_credentials_name_the_field(repository: dict[str, object], expected: str) -> None:
    data = {"goal": "g", "exit_conditions": [{"type": "LINTING_CLEAN"}], "repository": repository}
    with pytest.raises(ValidationError) as caught:
        LoopConfig.model_validate(data)
    message = format_validation_error(caught.value, "loopwright.toml")
    assert expected in message, message
    assert TOKEN not in message
