"""Fake agent CLIs for tests: executables named exactly like the real ones (``claude``, ``codex``,
``gemini``, ``aider``) that print recorded output in each CLI's real format.

The recordings follow the formats documented in each backend's module
(:mod:`loopwright.adapters.local.agents`); the lines are shaped like the CLIs' own (Claude
Code's stream-json messages, ``codex exec --json`` events, Gemini CLI's stream-json events and
``json-formatter.test.ts`` stats, aider's usage report).

:func:`install_fake_cli` writes one executable: it reads its stdin, records its argv, stdin and
working directory to ``$FAKE_CLI_RECORD`` (when set), optionally writes a file in its working
directory (so a loop can converge), prints the scenario's stdout and stderr lines and exits with
its code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SESSION = "8f1e2c4a-5b6d-4e7f-9a0b-1c2d3e4f5a6b"
THREAD = "0199a213-81c0-7800-8aa1-bbab2a035a53"

CLAUDE_OK = [
    {
        "type": "system",
        "subtype": "init",
        "cwd": "/w",
        "session_id": SESSION,
        "tools": ["Task", "Bash", "Edit", "Read"],
        "model": "claude-sonnet-4-5-20250929",
        "permissionMode": "acceptEdits",
        "apiKeySource": "none",
    },
    {
        "type": "assistant",
        "message": {
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [
                {"type": "text", "text": "I'll fix the failing check."},
                {
                    "type": "tool_use",
                    "id": "toolu_01",
                    "name": "Edit",
                    "input": {"file_path": "/w/src/calc.py", "old_string": "a - b", "new_string": "a + b"},
                },
            ],
            "usage": {"input_tokens": 4, "cache_creation_input_tokens": 1200, "output_tokens": 85},
        },
        "parent_tool_use_id": None,
        "session_id": SESSION,
    },
    {
        "type": "user",
        "message": {
            "role": "user",
            "content": [{"tool_use_id": "toolu_01", "type": "tool_result", "content": "File updated."}],
        },
        "parent_tool_use_id": None,
        "session_id": SESSION,
    },
    {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "duration_ms": 5120,
        "duration_api_ms": 4800,
        "num_turns": 3,
        "result": "Fixed add() in src/calc.py: it subtracted.",
        "session_id": SESSION,
        "total_cost_usd": 0.0123,
        "usage": {
            "input_tokens": 12,
            "cache_creation_input_tokens": 1500,
            "cache_read_input_tokens": 18000,
            "output_tokens": 210,
            "server_tool_use": {"web_search_requests": 0},
            "service_tier": "standard",
        },
        "permission_denials": [],
    },
]
#: 2030-01-01T00:00:00Z as a Unix time.
LIMIT_EPOCH = 1893456000
#: CLAUDE_OK after a long session: its turn read 170000 cached tokens (85% of a 200000 window).
CLAUDE_FULL_CONTEXT = [
    CLAUDE_OK[0],
    {
        **CLAUDE_OK[1],
        "message": {
            **CLAUDE_OK[1]["message"],  # type: ignore[dict-item]
            "usage": {
                "input_tokens": 4,
                "cache_creation_input_tokens": 1200,
                "cache_read_input_tokens": 168796,
                "output_tokens": 85,
            },
        },
    },
    *CLAUDE_OK[2:],
]
CLAUDE_LIMIT = [
    CLAUDE_OK[0],
    {
        "type": "result",
        "subtype": "success",
        "is_error": True,
        "duration_ms": 310,
        "num_turns": 1,
        "result": f"Claude AI usage limit reached|{LIMIT_EPOCH}",
        "session_id": SESSION,
        "total_cost_usd": 0,
        "usage": {"input_tokens": 0, "output_tokens": 0},
    },
]

CODEX_OK = [
    {"type": "thread.started", "thread_id": THREAD},
    {"type": "turn.started"},
    {"type": "item.completed", "item": {"id": "item_0", "type": "reasoning", "text": "**Fixing add**"}},
    {
        "type": "item.started",
        "item": {
            "id": "item_1",
            "type": "command_execution",
            "command": "bash -lc 'pytest -q'",
            "aggregated_output": "",
            "exit_code": None,
            "status": "in_progress",
        },
    },
    {
        "type": "item.completed",
        "item": {
            "id": "item_1",
            "type": "command_execution",
            "command": "bash -lc 'pytest -q'",
            "aggregated_output": "1 failed",
            "exit_code": 1,
            "status": "failed",
        },
    },
    {
        "type": "item.completed",
        "item": {
            "id": "item_2",
            "type": "file_change",
            "changes": [{"path": "src/calc.py", "kind": "update"}],
            "status": "completed",
        },
    },
    {"type": "item.completed", "item": {"id": "item_3", "type": "agent_message", "text": "Fixed add()."}},
    {
        "type": "turn.completed",
        "usage": {"input_tokens": 24763, "cached_input_tokens": 24448, "output_tokens": 122},
    },
]
CODEX_LIMIT = [
    {"type": "thread.started", "thread_id": THREAD},
    {"type": "turn.started"},
    {"type": "error", "message": "You've hit your usage limit. Try again later."},
    {"type": "turn.failed", "error": {"message": "You've hit your usage limit. Try again later."}},
]

GEMINI_OK = [
    {
        "type": "init",
        "timestamp": "2026-12-07T10:00:00.000Z",
        "session_id": "c4f1",
        "model": "gemini-2.5-pro",
    },
    {"type": "message", "timestamp": "2026-12-07T10:00:00.100Z", "role": "user", "content": "task"},
    {
        "type": "tool_use",
        "timestamp": "2026-12-07T10:00:01.000Z",
        "tool_name": "replace",
        "tool_id": "replace-1",
        "parameters": {"file_path": "/w/src/calc.py", "old_string": "a - b", "new_string": "a + b"},
    },
    {
        "type": "tool_result",
        "timestamp": "2026-12-07T10:00:01.200Z",
        "tool_id": "replace-1",
        "status": "success",
    },
    {
        "type": "message",
        "timestamp": "2026-12-07T10:00:02.000Z",
        "role": "assistant",
        "content": "Fixed add() ",
        "delta": True,
    },
    {
        "type": "message",
        "timestamp": "2026-12-07T10:00:02.100Z",
        "role": "assistant",
        "content": "in src/calc.py.",
        "delta": True,
    },
    {
        "type": "result",
        "timestamp": "2026-12-07T10:00:02.200Z",
        "status": "success",
        "stats": {
            "total_tokens": 24719,
            "input_tokens": 24401,
            "output_tokens": 318,
            "cached": 10656,
            "input": 13745,
            "duration_ms": 5672,
            "tool_calls": 1,
        },
    },
]
GEMINI_QUOTA_MESSAGE = (
    "[API Error: You have exhausted your capacity on this model. Quota exceeded for metric "
    "generate_content_requests (code 429, status RESOURCE_EXHAUSTED). Please retry in 30s.]"
)
GEMINI_LIMIT = [
    GEMINI_OK[0],
    {
        "type": "result",
        "timestamp": "2026-12-07T10:00:00.500Z",
        "status": "error",
        "error": {"type": "TerminalQuotaError", "message": GEMINI_QUOTA_MESSAGE},
        "stats": {
            "total_tokens": 0,
            "input_tokens": 0,
            "output_tokens": 0,
            "cached": 0,
            "input": 0,
            "duration_ms": 400,
            "tool_calls": 0,
        },
    },
]

AIDER_OK = [
    "Aider v0.86.1",
    "Main model: anthropic/claude-sonnet-4-20250514 with diff edit format, infinite output",
    "Weak model: anthropic/claude-3-5-haiku-20241022",
    "Git repo: .git with 3 files",
    "Repo-map: using 4096 tokens, auto refresh",
    "I'll fix the add function.",
    "",
    "src/calc.py",
    "<<<<<<< SEARCH",
    "    return a - b",
    "=======",
    "    return a + b",
    ">>>>>>> REPLACE",
    "",
    "Tokens: 2.5k sent, 1.2k cache write, 3.4k cache hit, 120 received. "
    "Cost: $0.0091 message, $0.0091 session.",
    "Applied edit to src/calc.py",
]
AIDER_LIMIT = [
    "Aider v0.86.1",
    "Main model: anthropic/claude-sonnet-4-20250514 with diff edit format, infinite output",
    'litellm.RateLimitError: AnthropicException - {"type":"error","error":{"type":"rate_limit_error",'
    '"message":"This request would exceed your rate limit."}}',
    "The API provider has rate limited you. Try again later or check your quotas.",
    "Retrying in 0.2 seconds...",
]


def _claude_error(message: str) -> list[Any]:
    """Claude Code's stream-json when its API call failed: an error ``result`` line."""
    return [
        CLAUDE_OK[0],
        {
            "type": "result",
            "subtype": "success",
            "is_error": True,
            "duration_ms": 120,
            "num_turns": 1,
            "result": message,
            "session_id": SESSION,
            "total_cost_usd": 0,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        },
    ]


# Failure causes (issue 15.3), as the CLIs print them: Claude Code's "Invalid API key · Please run
# /login" and its API errors ("API Error: 529 {...overloaded_error...}"), Codex's error events
# after its own retries ("exceeded retry limit, last status: 429 Too Many Requests").
CLAUDE_AUTH = _claude_error("Invalid API key · Please run /login")
CLAUDE_OVERLOADED = _claude_error(
    'API Error: 529 {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
)
CODEX_RATE_LIMIT = [
    {"type": "thread.started", "thread_id": THREAD},
    {"type": "turn.started"},
    {"type": "error", "message": "exceeded retry limit, last status: 429 Too Many Requests"},
    {"type": "turn.failed", "error": {"message": "exceeded retry limit, last status: 429 Too Many Requests"}},
]


def _lines(records: list[Any]) -> list[str]:
    return [record if isinstance(record, str) else json.dumps(record) for record in records]


#: The recorded scenarios: CLI -> scenario -> (stdout lines, stderr lines, exit code).
SCENARIOS: dict[str, dict[str, tuple[list[str], list[str], int]]] = {
    "claude": {
        "ok": (_lines(CLAUDE_OK), [], 0),
        "full-context": (_lines(CLAUDE_FULL_CONTEXT), [], 0),
        "usage-limit": (_lines(CLAUDE_LIMIT), [], 1),
        "malformed": ([*_lines(CLAUDE_OK[:2]), '{"type":"result","subtype":"succ'], [], 0),
        "not-json": (["Claude Code is ready."], [], 0),
        "error-exit": ([], ["error: unknown option '--bogus'"], 1),
        "auth-error": (_lines(CLAUDE_AUTH), [], 1),
        "overloaded": (_lines(CLAUDE_OVERLOADED), [], 1),
        "hang": ([], [], 0),  # sleeps (see install_fake_cli's ``sleep``) past its timeout
    },
    "codex": {
        "ok": (_lines(CODEX_OK), [], 0),
        "usage-limit": (_lines(CODEX_LIMIT), [], 1),
        "malformed": (_lines(CODEX_OK[:4]), [], 0),
        "not-json": (["codex: thinking..."], [], 0),
        "error-exit": (
            [],
            ["Error: Not inside a trusted directory and --skip-git-repo-check was not specified."],
            1,
        ),
        "rate-limit": (_lines(CODEX_RATE_LIMIT), [], 1),
    },
    "gemini": {
        "ok": (_lines(GEMINI_OK), [], 0),
        "usage-limit": (_lines(GEMINI_LIMIT), [], 1),
        "malformed": (_lines(GEMINI_OK[:4]), [], 0),
        "not-json": (["Loaded cached credentials.", "Fixed it."], [], 0),
        "error-exit": ([], ["Please set an Auth method in your settings.json"], 41),
    },
    "aider": {
        "ok": (AIDER_OK, [], 0),
        "usage-limit": (AIDER_LIMIT, [], 0),
        "malformed": (["Aider v0.86.1", "Main model: gpt-4o with diff edit format"], [], 0),
        "not-json": (["Aider v0.86.1"], [], 0),
        "error-exit": ([], ["aider: error: unrecognized arguments: --bogus"], 2),
    },
}

_SCRIPT = '''#!{python}
"""A fake {name} CLI (loopwright's tests): prints recorded output, see tests/agent_cli_fakes.py."""
import json, os, pathlib, sys

spec = json.loads(pathlib.Path({spec!r}).read_text())
if spec.get("sequence"):  # the n-th call plays the n-th recording (the last one repeats)
    counter = pathlib.Path({spec!r} + ".calls")
    calls = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(calls + 1))
    spec.update(spec["sequence"][min(calls, len(spec["sequence"]) - 1)])
stdin = sys.stdin.read()
record = os.environ.get("FAKE_CLI_RECORD")
if record:
    with open(record, "a") as fh:
        fh.write(json.dumps({{"argv": sys.argv, "stdin": stdin, "cwd": os.getcwd(),
                             "report_file": os.environ.get("LOOPWRIGHT_REPORT_FILE")}}) + "\\n")
if spec.get("sleep"):
    import time
    time.sleep(spec["sleep"])
if spec.get("edit"):
    path = pathlib.Path(spec["edit"]["path"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(spec["edit"]["text"])
for line in spec["stdout"]:
    print(line, flush=True)
for line in spec["stderr"]:
    print(line, file=sys.stderr, flush=True)
sys.exit(spec["exit_code"])
'''


def install_fake_cli(
    bin_dir: Path,
    name: str,
    scenario: str,
    *,
    edit: str | None = None,
    sleep: float = 0,
    then: list[str] | None = None,
) -> Path:
    """Write the executable ``bin_dir/<name>`` playing ``SCENARIOS[name][scenario]``; ``edit``:
    a path, relative to the directory it runs in, that it writes before printing; ``sleep``:
    seconds it waits first (a hung agent); ``then``: the scenarios of its next calls, in order
    (the last one repeats)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    stdout, stderr, code = SCENARIOS[name][scenario]
    spec = bin_dir / f"{name}.spec.json"
    sequence = [
        dict(zip(("stdout", "stderr", "exit_code"), SCENARIOS[name][each], strict=True))
        for each in [scenario, *(then or [])]
    ]
    spec.write_text(
        json.dumps(
            {
                "stdout": stdout,
                "stderr": stderr,
                "exit_code": code,
                "edit": {"path": edit, "text": f"written by the fake {name}\n"} if edit else None,
                "sleep": sleep,
                "sequence": sequence if then else None,
            }
        )
    )
    program = bin_dir / name
    program.write_text(_SCRIPT.format(python=sys.executable, name=name, spec=str(spec)))
    program.chmod(0o755)
    return program


def recorded_calls(path: Path) -> list[dict[str, Any]]:
    """The calls a fake CLI recorded in ``path`` (``$FAKE_CLI_RECORD``), in order."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
