"""The git repository a loop works on in AWS, and its credentials (``LoopConfig.repository``)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: A git URL: ``https://``, ``ssh://``, ``git://``, ``file://`` or scp-like ``user@host:path``.
_GIT_URL = re.compile(r"(?:(?:https?|ssh|git|file)://|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:)\S+")
#: A Secrets Manager secret's ARN (full, with the 6 random characters, or partial).
_SECRET_ARN = re.compile(r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]{1,512}")
#: A user name git may send with a token (no ':' or newline: it is written into a credential answer).
_GIT_USERNAME = re.compile(r"[A-Za-z0-9._@+-]{1,256}")
#: A branch, tag or commit name that git cannot mistake for an option (no leading '-').
_GIT_REF = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/+-]{0,254}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RepositoryCredentials(_Strict):
    """The git credentials of a private repository: an HTTPS token stored in AWS Secrets Manager.

    Only the secret's ARN is part of the loop's config (and so of its state and status); the
    token is read by the Lambda that clones or pushes and handed to git in the loop's Code
    Interpreter session through a credential helper reading a file that exists only for the git
    call (:mod:`loopwright.adapters.aws.git_credentials`). The secret's value is the token itself,
    or JSON with a ``token`` key. The functions may read only the secrets the stack allows (CDK
    context ``loopwright:repositorySecretArns``).

    AWS CodeConnections connections are not accepted: CodeConnections has no API that returns git
    credentials to a caller (a connection is used by AWS services such as CodePipeline).
    """

    secret_arn: str = Field(description="ARN of the Secrets Manager secret holding the HTTPS token")
    username: str = Field(
        default="x-access-token",
        description="the user name git sends with the token (GitHub: x-access-token; GitLab: oauth2)",
    )

    @field_validator("secret_arn")
    @classmethod
    def _secret_arn(cls, value: str) -> str:
        if _SECRET_ARN.fullmatch(value) is None:
            raise ValueError(
                "must be the ARN of a Secrets Manager secret "
                "(arn:aws:secretsmanager:<region>:<account>:secret:<name>)"
            )
        return value

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if _GIT_USERNAME.fullmatch(value) is None:
            raise ValueError("must be 1 to 256 letters, digits or '.', '_', '@', '+', '-'")
        return value

    @model_validator(mode="before")
    @classmethod
    def _no_connection(cls, data: object) -> object:
        if isinstance(data, dict) and "connection_arn" in data:
            raise ValueError(
                "connection_arn: AWS CodeConnections gives no API that returns git credentials to "
                "a caller outside AWS services; store an HTTPS token in AWS Secrets Manager and set "
                "secret_arn instead"
            )
        return data


class RepositoryConfig(_Strict):
    """The git repository a loop works on when it runs in AWS (``LOOPWRIGHT_ADAPTERS=aws``).

    The loop's Code Interpreter session clones ``url`` and starts the branch
    ``loopwright/<loop_id>`` from ``ref`` (a branch, tag or commit of the remote; default its
    default branch). With ``push``, that branch is pushed to ``url`` after every iteration's
    commit, so the work outlives the session (a Code Interpreter session lasts at most 8 hours);
    an agent in AgentCore Runtime needs it, since it works on its own clone. Locally the
    workspace folder is the repository and this is not used.

    ``url`` must not hold credentials (they would be stored with the loop's config and shown in
    its status): a private repository names its HTTPS token in AWS Secrets Manager under
    ``credentials`` (:class:`RepositoryCredentials`); only the secret's ARN is stored.
    """

    url: str = Field(
        max_length=2048, description="git URL: https://, ssh://, git://, file:// or user@host:path"
    )
    ref: str | None = Field(default=None, description="branch, tag or commit to start from")
    push: bool = Field(default=False, description="push the loop's branch to url after every commit")
    credentials: RepositoryCredentials | None = Field(
        default=None, description="where the HTTPS token of a private repository is (AWS Secrets Manager)"
    )

    @model_validator(mode="after")
    def _credentials_need_https(self) -> RepositoryConfig:
        if self.credentials is not None and not self.url.startswith("https://"):
            raise ValueError(
                f"credentials: an HTTPS token works only with an https:// URL; url is {self.url!r}"
            )
        return self

    @field_validator("url")
    @classmethod
    def _git_url(cls, value: str) -> str:
        if _GIT_URL.fullmatch(value) is None:
            raise ValueError(
                "must be a git URL such as https://github.com/owner/repo.git or git@github.com:owner/repo.git"
            )
        if "://" in value:
            parts = urlsplit(value)
            if parts.password is not None or (parts.username is not None and parts.scheme.startswith("http")):
                raise ValueError(
                    "must not contain credentials (they would be stored with the loop's config); "
                    "remove the 'user:token@' part"
                )
        return value

    @field_validator("ref")
    @classmethod
    def _git_ref(cls, value: str | None) -> str | None:
        if value is not None and (_GIT_REF.fullmatch(value) is None or ".." in value):
            raise ValueError(
                "must be a branch, tag or commit name (letters, digits, '.', '_', '/', '+', '-'; "
                "not starting with '-', no '..')"
            )
        return value
