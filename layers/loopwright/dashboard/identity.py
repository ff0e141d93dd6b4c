"""Who is asking: the Cedar principal and groups of a dashboard request.

- AWS (:class:`CognitoIdentityResolver`): the claims API Gateway's Cognito authorizer puts in
  ``requestContext.authorizer.claims``: ``cognito:username`` (or ``username``) ->
  ``User::"<username>"``, each of ``cognito:groups`` -> ``Group::"<group>"``. No claims: 401.
  Request headers are never read.
- Local (:class:`LocalIdentityResolver`): the dashboard's user (``loopwright dashboard --user``,
  default the OS user); a request may act as another user with the ``X-Loopwright-User`` header
  (only the local server installs this resolver: that is how a refused control is shown), and
  only when the server is bound to a loopback address: on any other address the header is
  refused (400), since the access token says nothing about who holds it. Groups
  come from the operators file ``<state_dir>/operators.toml``::

      [projects.demo]
      operators = ["alice", "bob"]     # members of Group::"demo-operators"

  When the file does not exist, the dashboard's own user operates every project (the API adds
  the loop's operators group to its groups) and any other user operates none.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loopwright.exceptions import ConfigError, LoopFrameworkError
from loopwright.models import operators_group

#: Request header that acts as another local user (local server only).
IMPERSONATION_HEADER = "X-Loopwright-User"
#: File, in the state folder, naming each project's operators.
OPERATORS_FILE_NAME = "operators.toml"
#: User and group names the API accepts (they become Cedar entity ids).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")


class IdentityError(LoopFrameworkError):
    """The request carries no usable identity: ``status`` 401 (none) or 400 (malformed, naming
    ``field``)."""

    def __init__(self, message: str, *, status: int, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


@dataclass(frozen=True)
class Identity:
    """A caller: Cedar ``principal`` (``User::"alice"``) and ``groups`` (``Group::"..."``).

    ``operates_all_projects``: the local dashboard user without an operators file; the API adds
    the loop's operators group when it builds a control request.
    """

    principal: str
    groups: tuple[str, ...] = ()
    operates_all_projects: bool = False
    source: str = "local"
    impersonation_header: str | None = None

    def groups_for(self, project: str) -> list[str]:
        """The groups to give Cedar for a request about ``project``: :attr:`groups`, plus the
        project's operators group when :attr:`operates_all_projects`."""
        groups = list(self.groups)
        if self.operates_all_projects and operators_group(project) not in groups:
            groups.append(operators_group(project))
        return groups


class IdentityResolver(Protocol):
    """Gives the identity of an API Gateway proxy event (a dict); raises :class:`IdentityError`."""

    def __call__(self, event: Mapping[str, Any]) -> Identity: ...


def user_uid(name: str) -> str:
    """``User::"<name>"``."""
    return f'User::"{name}"'


def group_uid(name: str) -> str:
    """``Group::"<name>"``."""
    return f'Group::"{name}"'


def _check_name(value: str, field_name: str) -> str:
    if not _NAME.match(value):
        raise IdentityError(
            f"{field_name}: {value[:40]!r} is not a user name (letters, digits, '.', '_', '@', '+', '-'; "
            "at most 128 characters)",
            status=400,
            field=field_name,
        )
    return value


def _split_groups(raw: object) -> list[str]:
    """``cognito:groups`` as API Gateway passes it: a list, or a string such as ``"a,b"`` or
    ``"[a b]"`` (REST API claims are strings)."""
    if isinstance(raw, list):
        return [str(g) for g in raw if str(g)]
    if isinstance(raw, str):
        return [g for g in re.split(r"[,\s]+", raw.strip().strip("[]")) if g]
    return []


class CognitoIdentityResolver:
    """The identity from the Cognito authorizer's claims (see the module docstring)."""

    def __call__(self, event: Mapping[str, Any]) -> Identity:
        context = event.get("requestContext") or {}
        authorizer = context.get("authorizer") or {}
        claims = authorizer.get("claims") or {}
        username = claims.get("cognito:username") or claims.get("username")
        if not username:
            raise IdentityError(
                "no authenticated user: sign in (Cognito) and send the ID token in Authorization",
                status=401,
            )
        groups = [group_uid(g) for g in _split_groups(claims.get("cognito:groups")) if _NAME.match(g)]
        return Identity(
            principal=user_uid(_check_name(str(username), "cognito:username")),
            groups=tuple(groups),
            source="cognito",
        )


class _OperatorsFile(BaseModel):
    """``operators.toml``: ``[projects.<project>] operators = [users]``."""

    model_config = ConfigDict(extra="forbid")

    class Project(BaseModel):
        model_config = ConfigDict(extra="forbid")
        operators: list[str] = Field(default_factory=list)

    projects: dict[str, Project] = Field(default_factory=dict)


def load_operators(path: Path) -> dict[str, list[str]] | None:
    """project -> operator user names from ``path``; None when the file does not exist.

    Raises :class:`ConfigError` naming the file and the problem when it cannot be read.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    try:
        parsed = _OperatorsFile.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f'{path}: {where}: {first["msg"]}; expected [projects.<project>] operators = ["user", ...]'
        ) from exc
    return {project: entry.operators for project, entry in parsed.projects.items()}


def default_user() -> str:
    """The OS user's login name (``USER``/``LOGNAME``, else ``operator``)."""
    for name in ("USER", "LOGNAME", "USERNAME"):
        value = os.environ.get(name, "")
        if value and _NAME.match(value):
            return value
    return "operator"


@dataclass
class LocalIdentityResolver:
    """The local identity (see the module docstring).

    Args:
        user: the dashboard's user.
        operators_path: the operators file; re-read when its modification time changes.
        allow_impersonation: honour :data:`IMPERSONATION_HEADER` (a dashboard bound to a loopback
            address does); otherwise a request carrying it is refused (400 naming the header).
        agent_of: given a state-changing request (not GET/HEAD), the id of the loop whose
            processes sent it, if any: such a request acts as ``Agent::"<loop_id>"`` (no groups),
            whatever its headers say, so an agent cannot reach the controls as the user
            through the dashboard either (locally: its client socket's process, see
            :func:`loopwright.adapters.local.peer.loop_of_client`).
    """

    user: str
    operators_path: Path
    allow_impersonation: bool = True
    agent_of: Callable[[Mapping[str, Any]], str | None] | None = None
    _cache: tuple[float | None, dict[str, list[str]] | None] = field(default=(None, None), repr=False)

    def __post_init__(self) -> None:
        _check_name(self.user, "--user")

    def operators(self) -> dict[str, list[str]] | None:
        """project -> operators from the file (None: no file). Raises :class:`ConfigError`."""
        try:
            mtime: float | None = self.operators_path.stat().st_mtime
        except OSError:
            mtime = None
        if mtime is None:
            self._cache = (None, None)
            return None
        if self._cache[0] != mtime:
            self._cache = (mtime, load_operators(self.operators_path))
        return self._cache[1]

    def __call__(self, event: Mapping[str, Any]) -> Identity:
        if self.agent_of is not None and str(event.get("httpMethod", "GET")).upper() not in ("GET", "HEAD"):
            loop_id = self.agent_of(event)
            if loop_id is not None:
                return Identity(principal=f'Agent::"{loop_id}"', source="local")
        name = self.user
        headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
        asked = headers.get(IMPERSONATION_HEADER.lower())
        if asked and not self.allow_impersonation:
            raise IdentityError(
                f"{IMPERSONATION_HEADER}: acting as another user works only on a dashboard bound to a "
                "loopback address (127.0.0.1, ::1); this one is not: send the request without it",
                status=400,
                field=IMPERSONATION_HEADER,
            )
        if asked:
            name = _check_name(str(asked).strip(), IMPERSONATION_HEADER)
        header = IMPERSONATION_HEADER if self.allow_impersonation else None
        operators = self.operators()
        if operators is None:
            return Identity(
                principal=user_uid(name),
                operates_all_projects=name == self.user,
                impersonation_header=header,
            )
        groups = tuple(operators_group(p) for p, users in sorted(operators.items()) if name in users)
        return Identity(principal=user_uid(name), groups=groups, impersonation_header=header)
