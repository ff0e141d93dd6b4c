"""Loading a :class:`~loopwright.models.LoopConfig` from a file and CLI overrides.

A config is looked for as ``loopwright.toml``, ``loopwright.yaml`` or ``loopwright.yml`` in the
workspace unless a path is given. Overrides (from CLI flags) replace top-level fields before
validation, so an override is validated exactly like the file. Every problem is raised as one
:class:`~loopwright.exceptions.ConfigError` whose message names the source, the field and what
is allowed.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from loopwright.exceptions import ConfigError
from loopwright.models import (
    AgentConfig,
    ExitConditionConfig,
    LoopConfig,
    RepositoryConfig,
)
from loopwright.models.config import RepositoryCredentials
from loopwright.models.pricing import ModelPrice

CONFIG_FILE_NAMES = ("loopwright.toml", "loopwright.yaml", "loopwright.yml")


def find_config(workspace: Path) -> Path | None:
    """The first of :data:`CONFIG_FILE_NAMES` present in ``workspace``, or None."""
    for name in CONFIG_FILE_NAMES:
        candidate = workspace / name
        if candidate.is_file():
            return candidate
    return None


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a TOML or YAML file into a dict. Raises :class:`ConfigError` on unreadable input."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    try:
        if path.suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml  # only YAML configs pay for importing PyYAML (about 20 ms)

            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ConfigError(f"config {path}: invalid YAML: {exc}") from exc
        else:
            raise ConfigError(f"config {path}: unknown file type {path.suffix!r}; use .toml, .yaml or .yml")
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path}: invalid TOML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path}: the top level must be a table/mapping of fields")
    return data


#: Each agent kind's config model (``kind`` is the tag pydantic puts in an error's location).
AGENT_MODELS: dict[str, type[BaseModel]] = {
    model.model_fields["kind"].default.value: model for model in get_args(get_args(AgentConfig)[0])
}


def _allowed_fields(loc: tuple[int | str, ...], agent_kind: str | None = None) -> list[str]:
    """The fields of the model at ``loc`` (the location of an unknown field, without it; empty
    for a top-level field)."""
    models: list[type[BaseModel]]
    if not loc:
        models = [LoopConfig]
    elif loc[0] == "exit_conditions":
        models = [ExitConditionConfig]
    elif loc[0] == "agent":
        models = [AGENT_MODELS[agent_kind]] if agent_kind in AGENT_MODELS else list(AGENT_MODELS.values())
    elif loc[0] == "repository":
        models = [RepositoryCredentials if "credentials" in loc[1:] else RepositoryConfig]
    elif loc[0] == "prices":
        models = [ModelPrice]
    else:
        return []
    return sorted({name for model in models for name in model.model_fields})


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line: ``<source>: <field>: <problem>`` for the first error, plus how many more."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = tuple(first["loc"])
    # A discriminated union adds its tag (the agent's kind) to the location: drop it, keep the kind.
    agent_kind = None
    if len(loc) >= 2 and loc[0] == "agent" and str(loc[1]) in AGENT_MODELS:
        agent_kind = str(loc[1])
        loc = (loc[0], *loc[2:])
    field = ".".join(str(p) for p in loc) or "(top level)"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        allowed = _allowed_fields(loc[:-1], agent_kind)
        message = "unknown field" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
    elif first["type"] == "missing":
        message = "required field is missing"
    elif "input" in first and first["type"] not in ("model_type", "dict_type"):
        message += f" (got {first['input']!r})"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{source}: {field}: {message}{more}"


def load_config(
    workspace: Path,
    path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[LoopConfig, Path | None]:
    """Build the loop config from ``path`` (or the workspace's config file) and ``overrides``.

    Returns the config and the file it came from (None when only overrides were given).
    Raises :class:`ConfigError` (one line, naming the field) when anything is invalid.
    """
    source_path = path if path is not None else find_config(workspace)
    if path is not None and not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    data = read_config_file(source_path) if source_path else {}
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    source = str(source_path) if source_path else "command-line options"
    if not data:
        raise ConfigError(
            f"no config: write {CONFIG_FILE_NAMES[0]} in {workspace} or pass --config, "
            "or give --goal, --condition and --agent-command"
        )
    try:
        return LoopConfig.model_validate(data), source_path
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from exc
