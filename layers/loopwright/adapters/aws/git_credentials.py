"""Git credentials of a private repository: an HTTPS token in AWS Secrets Manager, handed to git
in the loop's Code Interpreter session without putting it on a command line.

:class:`SecretTokens` reads the token (``GetSecretValue``; the secret's ``SecretString`` is the
token, or JSON with a ``token`` key) once per Lambda container and secret. It is never logged
(botocore's DEBUG log of response bodies is muted for that call), never part of an error message,
never stored in the loop's state or events.

:class:`SessionGitCredentials` gives it to the git commands that talk to the remote (clone,
fetch, push; :class:`~loopwright.adapters.aws.session_workspace.SessionWorkspace`), for the
duration of each call:

1. ``mkdir -m 700`` a folder of the session for it;
2. ``writeFiles`` the token into a file there (the token travels in the API request's body,
   never in a shell line, so it is in no process's command line in the session), then
   ``chmod 600`` it;
3. git runs with ``-c credential.helper=`` (no other helper) and ``-c credential.helper=!<shell
   function>`` that answers ``get`` with ``username=<username>`` and ``password=`` followed by
   ``cat <file>``: the command lines hold the file's path, not the token;
4. the file is removed (``rm -f``) when the git call ends, failed or not.

The agent runs in the same session but never while the file exists (the workspace's git calls
and the agent's run do not overlap). A Lambda reads only the secrets its role allows (CDK context
``loopwright:repositorySecretArns``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shlex
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from loopwright.adapters.aws._errors import DEFAULT_MAX_ATTEMPTS, error_code, retry_config
from loopwright.adapters.aws.code_interpreter_sandbox import CodeInterpreterSandbox
from loopwright.exceptions import LoopFrameworkError, WorkspaceError
from loopwright.models import RepositoryCredentials

#: The folder of the session, relative to its working directory, where a token file lives while
#: a git call runs.
SESSION_CREDENTIALS_FOLDER = PurePosixPath(".loopwright/credentials")
#: Limit of the small commands around the token file, seconds.
FILE_COMMAND_TIMEOUT_SECONDS = 60


class SecretTokens:
    """The HTTPS tokens of repositories, read from AWS Secrets Manager (cached per secret ARN).

    Args:
        region_name: the AWS region (the secret's ARN names its own; the client's region is used).
        client: a boto3 ``secretsmanager`` client; default one with standard retries.
    """

    def __init__(
        self,
        region_name: str | None = None,
        *,
        client: Any | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        self._client = client
        self._region = region_name
        self._max_attempts = max_attempts
        self._tokens: dict[str, str] = {}

    def token(self, secret_arn: str) -> str:
        """The token of ``secret_arn``. Raises :class:`LoopFrameworkError` naming the secret (never
        its value) when it cannot be read or holds no token."""
        if secret_arn not in self._tokens:
            self._tokens[secret_arn] = self._read(secret_arn)
        return self._tokens[secret_arn]

    def _read(self, secret_arn: str) -> str:
        if self._client is None:
            self._client = boto3.client(
                "secretsmanager", region_name=self._region, config=retry_config(self._max_attempts)
            )
        try:
            with _response_bodies_unlogged():
                response = self._client.get_secret_value(SecretId=secret_arn)
        except ClientError as exc:
            code = error_code(exc)
            hint = (
                "the function's role may not read it: add its ARN to the CDK context "
                "loopwright:repositorySecretArns and deploy"
                if code == "AccessDeniedException"
                else "check that the secret exists in this account and region"
            )
            raise LoopFrameworkError(
                f"cannot read the repository token from secret {secret_arn!r} ({code}); {hint}"
            ) from None  # the service's message is not repeated: it is not ours to vet
        except BotoCoreError as exc:
            raise LoopFrameworkError(
                f"cannot read the repository token from secret {secret_arn!r}: {type(exc).__name__}"
            ) from None
        text = response.get("SecretString")
        token = _token_of(text) if isinstance(text, str) else None
        if not token:
            raise LoopFrameworkError(
                f"secret {secret_arn!r} holds no repository token: store the token itself as the "
                'secret string, or JSON {"token": "..."}'
            )
        return token


#: botocore's logger of response bodies (at DEBUG): a GetSecretValue answer holds the token.
_BODY_LOGGER = "botocore.parsers"


def _drop(record: logging.LogRecord) -> bool:
    return False


@contextlib.contextmanager
def _response_bodies_unlogged() -> Iterator[None]:
    """No record of botocore's response parser is emitted inside the block, whatever the log
    level (a DEBUG level would log the secret's value with the response body)."""
    logger = logging.getLogger(_BODY_LOGGER)
    logger.addFilter(_drop)
    try:
        yield
    finally:
        logger.removeFilter(_drop)


def _token_of(text: str) -> str | None:
    """The token in a secret string: the string itself, or the ``token`` key of a JSON object.
    None when there is none, or it holds a line break (it would end git's credential answer)."""
    value: object = text.strip()
    if isinstance(value, str) and value.startswith("{"):
        try:
            value = json.loads(value).get("token")
        except (ValueError, AttributeError):
            return None
    if not isinstance(value, str) or not value.strip() or any(c in value.strip() for c in "\r\n\0"):
        return None
    return value.strip()


class SessionGitCredentials:
    """Hands a repository's token to git in the session for one call (see the module docstring).

    Args:
        sandbox: the loop's Code Interpreter sandbox (``writeFiles`` and commands).
        credentials: the secret's ARN and the user name.
        tokens: reads the token.
        folder: where the token file lives, relative to the session's working directory.
    """

    def __init__(
        self,
        sandbox: CodeInterpreterSandbox,
        credentials: RepositoryCredentials,
        tokens: SecretTokens,
        *,
        folder: PurePosixPath = SESSION_CREDENTIALS_FOLDER,
    ) -> None:
        self.sandbox = sandbox
        self.credentials = credentials
        self.tokens = tokens
        self.folder = PurePosixPath(folder)

    @contextlib.contextmanager
    def git_options(self) -> Iterator[list[str]]:
        """The ``-c`` options that give git the token, valid inside the ``with`` block only.
        Raises :class:`WorkspaceError` when the token cannot be read or placed."""
        try:
            token = self.tokens.token(self.credentials.secret_arn)
        except LoopFrameworkError as exc:
            raise WorkspaceError(str(exc)) from exc
        relative = self.folder / uuid.uuid4().hex
        path = self.sandbox.working_directory() / relative
        self._command(["mkdir", "-p", "-m", "700", str(path.parent)], "create the credentials folder")
        try:
            self.sandbox.write_files({str(relative): token + "\n"})
            self._command(["chmod", "600", str(path)], "restrict the token file")
            helper = (
                '!f() { test "$1" = get || exit 0; '
                f"echo username={self.credentials.username}; printf password=; "
                f"cat {shlex.quote(str(path))}; }}; f"
            )
            yield ["-c", "credential.helper=", "-c", f"credential.helper={helper}"]
        finally:
            with contextlib.suppress(LoopFrameworkError):
                self._command(["rm", "-f", str(path)], "remove the token file")

    def _command(self, argv: list[str], what: str) -> None:
        done = self.sandbox.run(argv, cwd=Path("/"), timeout_seconds=FILE_COMMAND_TIMEOUT_SECONDS)
        if done.exit_code != 0:
            raise WorkspaceError(
                f"could not {what} in the Code Interpreter session (exit {done.exit_code}): "
                f"{(done.error or done.stderr)[-500:]}"
            )
