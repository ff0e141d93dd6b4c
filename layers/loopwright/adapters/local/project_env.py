"""The project's environment: which ``python`` a loop's commands run, and what they import.

A loop's agent and exit conditions run with the *user's* environment (see
:mod:`loopwright.adapters.local.environment`), never loopwright's own venv. This module decides,
once per run (when the engine binds the sandbox to the loop), what ``python`` means for the
project and how its tests are made to import the loop's worktree rather than the main checkout.

The interpreter, first found wins (all paths from the *workspace*, the user's main checkout: an
untracked ``.venv`` is not in the worktree):

======================  =============================================================  ==========
source                  where                                                          ``source``
======================  =============================================================  ==========
the config              ``python = "..."`` (a path; relative to the workspace; ``~``)  config
the project's venv      ``<workspace>/.venv`` or ``<workspace>/venv`` (a folder with   venv
                        ``pyvenv.cfg``); with ``uv.lock``, ``UV_PROJECT_ENVIRONMENT``  / uv
                        (relative to the workspace) when the user sets it
PDM                     the interpreter named in ``<workspace>/.pdm-python``           pdm
Poetry                  ``poetry env info -p`` (project has ``poetry.lock`` or         poetry
                        ``[tool.poetry]``, and ``poetry`` is on the user's ``PATH``)
Hatch                   ``hatch env find`` (project has ``hatch.toml`` or              hatch
                        ``[tool.hatch.envs``, and ``hatch`` is on ``PATH``)
the user's ``PATH``     the first ``python3``, else ``python``                         PATH
======================  =============================================================  ==========

The chosen interpreter is asked once (``python -I -c ...``, about 20 ms) for its real path (a
pyenv shim becomes the interpreter it runs), version, prefix and site-packages folders. When it
runs in a venv, that venv's ``bin`` goes first on ``PATH`` and ``VIRTUAL_ENV`` names it, so
``pytest``, ``ruff`` and the rest of the project's tools are found there.

What the tests import (:attr:`ProjectEnvironment.import_roots`, put first on ``PYTHONPATH``):

1. an editable install of the project in the chosen interpreter's site-packages that points into
   the workspace (a ``*.pth`` line naming a folder there, as setuptools, hatchling, flit, PDM and
   uv write them; the ``MAPPING`` of a setuptools ``__editable___*_finder.py``; a legacy
   ``*.egg-link``) is redirected: the same folder *in the worktree* goes first on ``PYTHONPATH``,
   so the agent's code is the one imported (``PYTHONPATH`` comes before every ``.pth`` entry and
   before the import hooks those files install);
2. without one, a src layout (``<worktree>/src`` holding a package or module, and a
   ``pyproject.toml``, ``setup.py`` or ``setup.cfg``) puts ``<worktree>/src`` first, so a copy
   installed non-editable is not what is tested;
3. otherwise nothing: ``python -m pytest`` already imports from its working folder, the worktree.

When the worktree is the workspace itself (``git_isolation = false``) nothing is redirected.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess  # nosec B404 - argv lists only, shell=False
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from loopwright.exceptions import ConfigError
from loopwright.models import LoopConfig

#: Seconds the interpreter probe and each tool query (poetry, hatch) may take.
PROBE_TIMEOUT_SECONDS = 30.0
#: Folders, in the workspace, taken as the project's venv (in this order).
VENV_DIR_NAMES = (".venv", "venv")
#: Files that mark a Python project (for the src-layout rule).
PROJECT_FILES = ("pyproject.toml", "setup.py", "setup.cfg")
#: What the interpreter probe prints: one JSON object.
_PROBE_CODE = (
    "import json, site, sys, sysconfig; paths = sysconfig.get_paths(); "
    "dirs = [paths['purelib'], paths['platlib']] + list(getattr(site, 'getsitepackages', list)()); "
    "print(json.dumps({'executable': sys.executable, 'prefix': sys.prefix, "
    "'base_prefix': sys.base_prefix, 'version': sys.version.split()[0], 'site': dirs}))"
)


class InterpreterSource(StrEnum):
    """How the project's interpreter was found (see the module table)."""

    CONFIG = "config"
    VENV = "venv"
    UV = "uv"
    PDM = "pdm"
    POETRY = "poetry"
    HATCH = "hatch"
    PATH = "PATH"
    NONE = "none"


class ProjectEnvironment(BaseModel):
    """What the loop's commands get of the project: its interpreter, venv and import roots, and
    the loop's ``env`` (config). Built by :func:`detect_project_environment`; applied by
    :func:`loopwright.adapters.local.environment.build_environment`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    python: str | None = Field(description="absolute path of the interpreter; None when none was found")
    source: InterpreterSource
    found_by: str = Field(description="how it was found, for people (e.g. '<workspace>/.venv')")
    version: str | None = Field(default=None, description="e.g. '3.11.7'")
    venv: str | None = Field(default=None, description="the venv's prefix, when the interpreter runs in one")
    base_prefix: str | None = Field(default=None, description="the prefix of the Python it is made from")
    import_roots: tuple[str, ...] = Field(
        default=(), description="worktree folders put first on PYTHONPATH (absolute paths)"
    )
    redirected: tuple[str, ...] = Field(
        default=(), description="the workspace folders an editable install pointed at, now shadowed"
    )
    env: dict[str, str] = Field(default_factory=dict, description="the loop's env (config), over the user's")

    def describe(self) -> str:
        """One line for people: ``python /p/.venv/bin/python 3.11.7 (<workspace>/.venv); ...``."""
        if self.python is None:
            return f"python: none found ({self.found_by})"
        text = f"python {self.python}"
        if self.version:
            text += f" {self.version}"
        text += f" ({self.found_by})"
        if self.import_roots:
            text += "; imports " + ", ".join(self.import_roots) + " first"
        return text

    def folders(self) -> list[str]:
        """What running the interpreter reads: its venv, the Python it is made from, its folder."""
        found = [self.venv, self.base_prefix, str(Path(self.python).parent) if self.python else None]
        return [folder for folder in found if folder]

    def record(self) -> dict[str, object]:
        """The fields an event records (``python``, ``python_source``, ``python_found_by``,
        ``venv``, ``import_roots``)."""
        return {
            "python": self.python,
            "python_source": self.source.value,
            "python_found_by": self.found_by,
            "venv": self.venv,
            "import_roots": list(self.import_roots),
        }


class Interpreter(BaseModel):
    """What an interpreter says about itself (the probe's answer)."""

    model_config = ConfigDict(frozen=True)

    executable: str
    prefix: str
    base_prefix: str
    version: str
    site: list[str]

    @property
    def venv(self) -> str | None:
        """Its prefix when it runs in a venv, else None."""
        return self.prefix if self.prefix != self.base_prefix else None


def probe(python: str, env: Mapping[str, str]) -> Interpreter:
    """Ask ``python`` (a path) for its real path, prefixes, version and site-packages folders.

    An answer is kept for the life of the process while the file at ``python`` is the same one
    (its inode and modification time, the link itself for a venv's symbolic link): one start of
    a loop looks the environment up for preflight and again for its sandbox, and each probe
    starts an interpreter (about 25 ms). The probe runs with ``-I``, so ``env`` cannot change the
    answer. Raises :class:`ConfigError` when it cannot be run or does not answer like a
    Python 3 (not kept: a fixed interpreter is probed again).
    """
    try:
        stat = os.lstat(python)
    except OSError as exc:
        raise ConfigError(f"python: cannot run {python}: {exc}") from exc
    key = (python, stat.st_ino, stat.st_mtime_ns)
    known = _PROBED.get(key)
    if known is None:
        known = _PROBED[key] = _probe(python, env)
    return known


#: Answers of :func:`probe` by (path, inode, modification time) of the interpreter's file.
_PROBED: dict[tuple[str, int, int], Interpreter] = {}


def _probe(python: str, env: Mapping[str, str]) -> Interpreter:
    """Run the probe (see :func:`probe`)."""
    try:
        done = subprocess.run(  # nosec B603 - argv list, never a shell
            [python, "-I", "-c", _PROBE_CODE],
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_SECONDS,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"python: cannot run {python}: {exc}") from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"python: {python} does not run (exit code {done.returncode}: {last})")
    try:
        return Interpreter.model_validate(json.loads(done.stdout))
    except ValueError as exc:
        raise ConfigError(f"python: {python} did not answer like a Python 3 interpreter") from exc


def _venv_python(folder: Path) -> Path | None:
    """``folder/bin/python`` when ``folder`` is a venv (has ``pyvenv.cfg``), else None."""
    if not (folder / "pyvenv.cfg").is_file():
        return None
    for name in ("python", "python3"):
        candidate = folder / "bin" / name
        if candidate.exists():
            return candidate
    return None


def _pyproject(workspace: Path) -> str:
    try:
        return (workspace / "pyproject.toml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _tool_query(argv: Sequence[str], workspace: Path, env: Mapping[str, str]) -> Path | None:
    """The folder a tool prints (``poetry env info -p``, ``hatch env find``), when it exists."""
    tool = shutil.which(argv[0], path=env.get("PATH", ""))
    if tool is None:
        return None
    try:
        done = subprocess.run(  # nosec B603 - argv list, never a shell
            [tool, *argv[1:]],
            cwd=workspace,
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_SECONDS,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return None
    folder = Path(lines[-1].strip())
    return folder if folder.is_absolute() and folder.is_dir() else None


def configured_python(python: str, workspace: Path) -> Path:
    """The interpreter a ``python`` setting names: ``~`` expanded, relative to ``workspace``.

    Raises :class:`ConfigError` when it does not exist or is not executable.
    """
    path = Path(python).expanduser()
    if not path.is_absolute():
        path = workspace / path
    if not path.is_file() or not os.access(path, os.X_OK):
        raise ConfigError(
            f"python: {python!r} is not an executable file ({path}); give the path of the "
            'project\'s interpreter, for example ".venv/bin/python", or remove the setting'
        )
    return path


def check_python(config: LoopConfig, workspace: Path) -> None:
    """Raise :class:`ConfigError` when ``config.python`` names no executable file (checked
    before a loop is written; see :func:`configured_python`)."""
    if config.python is not None:
        configured_python(config.python, Path(workspace))


def find_interpreter(
    workspace: Path, env: Mapping[str, str], *, python: str | None = None
) -> tuple[Path | None, InterpreterSource, str]:
    """``(interpreter, source, found_by)`` by the rules of the module table; ``env`` is the
    user's environment (its ``PATH`` is searched). ``(None, NONE, why)`` when nothing is found.

    Raises :class:`ConfigError` for a ``python`` setting that names no interpreter.
    """
    if python is not None:
        return configured_python(python, workspace), InterpreterSource.CONFIG, "python in the config"
    uses_uv = (workspace / "uv.lock").is_file()
    uv_env = env.get("UV_PROJECT_ENVIRONMENT") if uses_uv else None
    folders = ([workspace / uv_env] if uv_env else []) + [workspace / name for name in VENV_DIR_NAMES]
    for folder in folders:
        in_folder = _venv_python(folder)
        if in_folder is not None:
            source = InterpreterSource.UV if uses_uv else InterpreterSource.VENV
            return in_folder, source, f"{'uv.lock, ' if uses_uv else ''}venv {folder}"
    pdm_file = workspace / ".pdm-python"
    if pdm_file.is_file():
        try:
            named = Path(pdm_file.read_text(encoding="utf-8").strip())
        except (OSError, UnicodeDecodeError):
            named = Path()
        if named.is_absolute() and named.is_file():
            return named, InterpreterSource.PDM, f"{pdm_file}"
    pyproject = _pyproject(workspace)
    if (workspace / "poetry.lock").is_file() or "[tool.poetry" in pyproject:
        queried = _tool_query(["poetry", "env", "info", "-p"], workspace, env)
        found = _venv_python(queried) if queried else None
        if found is not None:
            return found, InterpreterSource.POETRY, f"poetry env info -p: {queried}"
    if (workspace / "hatch.toml").is_file() or "[tool.hatch.envs" in pyproject:
        queried = _tool_query(["hatch", "env", "find"], workspace, env)
        found = _venv_python(queried) if queried else None
        if found is not None:
            return found, InterpreterSource.HATCH, f"hatch env find: {queried}"
    for name in ("python3", "python"):
        on_path = shutil.which(name, path=env.get("PATH", ""))
        if on_path is not None:
            return Path(os.path.abspath(on_path)), InterpreterSource.PATH, f"first {name} on PATH"
    hint = "; uv.lock found but no .venv: run `uv sync`" if uses_uv else ""
    return None, InterpreterSource.NONE, f"no venv in the workspace and no python3 on PATH{hint}"


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _pth_paths(pth: Path) -> list[Path]:
    """The folders a ``.pth`` file adds (its non-import, non-comment lines)."""
    try:
        text = pth.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    lines = (line.strip() for line in text.splitlines())
    return [Path(line) for line in lines if line and not line.startswith(("#", "import ", "import\t"))]


def _finder_paths(finder: Path) -> list[Path]:
    """The folders holding the packages of a setuptools ``__editable___*_finder.py`` ``MAPPING``."""
    try:
        tree = ast.parse(finder.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, SyntaxError):
        return []
    for node in tree.body:
        target: ast.expr
        value: ast.expr | None
        if isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        else:
            continue
        if not isinstance(target, ast.Name) or target.id != "MAPPING" or value is None:
            continue
        try:
            mapping = ast.literal_eval(value)
        except ValueError:
            return []
        if isinstance(mapping, dict):
            return [Path(str(p)).parent for p in mapping.values()]
    return []


def editable_paths(site_dirs: Sequence[str]) -> list[Path]:
    """Every folder the editable installs in ``site_dirs`` put on ``sys.path`` (``*.pth`` lines,
    setuptools finder mappings, ``*.egg-link`` first lines), in the order found."""
    found: list[Path] = []
    for site_dir in dict.fromkeys(site_dirs):
        folder = Path(site_dir)
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if entry.suffix == ".pth":
                found += _pth_paths(entry)
            elif entry.name.startswith("__editable___") and entry.name.endswith("_finder.py"):
                found += _finder_paths(entry)
            elif entry.suffix == ".egg-link":
                found += _pth_paths(entry)[:1]
    return found


def _holds_code(folder: Path) -> bool:
    return folder.is_dir() and (
        any(folder.glob("*.py")) or any(child.is_file() for child in folder.glob("*/__init__.py"))
    )


def import_roots(
    workspace: Path, worktree: Path, site_dirs: Sequence[str], *, state_dir: Path | None = None
) -> tuple[list[Path], list[Path]]:
    """``(roots, redirected)``: the worktree folders to put first on ``PYTHONPATH`` and the
    workspace folders they shadow (rules 1-3 of the module docstring). Paths are resolved."""
    workspace, worktree = workspace.resolve(), worktree.resolve()
    if workspace == worktree:
        return [], []
    state = state_dir.resolve() if state_dir is not None else workspace / ".loopwright"
    roots: list[Path] = []
    redirected: list[Path] = []
    for path in editable_paths(site_dirs):
        try:
            real = path.resolve()
        except OSError:
            continue
        if not _inside(real, workspace) or _inside(real, state) or _inside(real, worktree):
            continue
        counterpart = worktree / real.relative_to(workspace)
        if counterpart.is_dir() and counterpart not in roots:
            roots.append(counterpart)
            redirected.append(real)
    if not roots and any((worktree / name).is_file() for name in PROJECT_FILES):
        src = worktree / "src"
        if _holds_code(src):
            roots.append(src)
    return roots, redirected


def detect_project_environment(
    workspace: Path,
    worktree: Path,
    user_env: Mapping[str, str],
    *,
    python: str | None = None,
    env: Mapping[str, str] | None = None,
    state_dir: Path | None = None,
) -> ProjectEnvironment:
    """The :class:`ProjectEnvironment` of a loop on ``workspace`` (the user's checkout) working
    in ``worktree``: ``user_env`` is the user's environment (loopwright's own venv removed), its
    ``PATH`` searched; ``python`` the config's setting; ``env`` the loop's ``env`` (config),
    merged over ``user_env`` before the search.

    Raises :class:`ConfigError` when the ``python`` setting names no interpreter, or the
    interpreter found does not run (a broken ``.venv``: recreate it or set ``python``).
    """
    search_env = {**user_env, **(env or {})}
    found, source, found_by = find_interpreter(Path(workspace), search_env, python=python)
    if found is None:
        return ProjectEnvironment(python=None, source=source, found_by=found_by, env=dict(env or {}))
    interpreter = probe(str(found), search_env)
    roots, redirected = import_roots(workspace, worktree, interpreter.site, state_dir=state_dir)
    # A venv's interpreter is kept by its venv path (its real path would leave the venv).
    executable = str(found) if interpreter.venv is not None else interpreter.executable
    return ProjectEnvironment(
        python=executable,
        source=source,
        found_by=found_by,
        version=interpreter.version,
        venv=interpreter.venv,
        base_prefix=interpreter.base_prefix,
        import_roots=tuple(str(root) for root in roots),
        redirected=tuple(str(path) for path in redirected),
        env=dict(env or {}),
    )
