"""Loading a :class:`~loopwright.models.LoopConfig` from a file and CLI overrides.

A config is looked for as ``loopwright.toml``, ``loopwright.yaml`` or ``loopwright.yml`` in the
workspace unless a path is given. Overrides (from CLI flags) replace top-level fields before
validation, so an override is validated exactly like the file. Every problem is raised as one
:class:`~loopwright.exceptions.ConfigError` whose message names the source, the field and what
is allowed.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, TypeAdapter, ValidationError

from loopwright.exceptions import ConfigError
from loopwright.models import (
    AgentConfig,
    ExitConditionConfig,
    FeatureConfig,
    LoopConfig,
    RepositoryConfig,
)
from loopwright.models.config import RepositoryCredentials
from loopwright.models.pricing import ModelPrice

CONFIG_FILE_NAMES = ("loopwright.toml", "loopwright.yaml", "loopwright.yml")
#: Files in the workspace that may hold the loop's feature list instead of the config (issue 10.2).
FEATURE_FILE_NAMES = ("features.json", "features.toml")


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
    elif loc[0] == "exit_conditions" or (loc[0] == "features" and "acceptance_conditions" in loc):
        models = [ExitConditionConfig]
    elif loc[0] == "features":
        models = [FeatureConfig]
    elif loc[0] == "agent":
        models = [AGENT_MODELS[agent_kind]] if agent_kind in AGENT_MODELS else list(AGENT_MODELS.values())
    elif loc[0] == "repository":
        models = [RepositoryCredentials if "credentials" in loc[1:] else RepositoryConfig]
    elif loc[0] == "prices":
        models = [ModelPrice]
    else:
        return []
    return sorted({name for model in models for name in model.model_fields})


def format_validation_error(exc: ValidationError, source: str, *, prefix: tuple[str, ...] = ()) -> str:
    """One line: ``<source>: <field>: <problem>`` for the first error, plus how many more;
    ``prefix`` goes before the error's location (a part of the config validated on its own)."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = (*prefix, *first["loc"])
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
    features_file = find_features_file(workspace)
    if features_file is not None and data:
        if "features" in data:
            raise ConfigError(
                f"{source}: features: the feature list is given here and in {features_file}; keep one"
            )
        data["features"] = read_features_file(features_file)
    if not data:
        raise ConfigError(
            f"no config: write {CONFIG_FILE_NAMES[0]} in {workspace} or pass --config, "
            "or give --goal, --condition and --agent-command"
        )
    try:
        return LoopConfig.model_validate(data), source_path
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from exc


def find_features_file(workspace: Path) -> Path | None:
    """The first of :data:`FEATURE_FILE_NAMES` present in ``workspace``, or None."""
    for name in FEATURE_FILE_NAMES:
        candidate = workspace / name
        if candidate.is_file():
            return candidate
    return None


def read_features_file(path: Path) -> list[Any]:
    """The feature list in ``path``, validated: ``features.json`` holds a list of features or an
    object with a ``features`` list, ``features.toml`` a ``[[features]]`` array of tables. Raises
    :class:`ConfigError` (one line naming the file and the field) for unreadable or invalid input.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read feature list {path}: {exc.strerror}") from exc
    try:
        data: Any = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    if isinstance(data, dict):
        extra = sorted(set(data) - {"features"})
        if extra:
            raise ConfigError(f"{path}: {extra[0]}: unknown field; allowed: features")
        data = data.get("features")
    if not isinstance(data, list):
        raise ConfigError(
            f"{path}: features: must be a list of features (name, description, acceptance_conditions)"
        )
    try:
        features = TypeAdapter(list[FeatureConfig]).validate_python(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path), prefix=("features",))) from exc
    names = [feature.name for feature in features]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise ConfigError(
                f"{path}: features.{index}.name: {name!r} is used twice; give each feature a unique name"
            )
    return [feature.model_dump(exclude_defaults=True) for feature in features]
