"""When a usage or rate limit lifts, read from an agent CLI's own message.

Each CLI words its limit differently; the reset time is read from the message when it carries
one, else :data:`DEFAULT_USAGE_LIMIT_WAIT` from now (the caller says so in its summary):

* Claude Code: ``Claude AI usage limit reached|1760000400`` (a Unix time, seconds) and, in newer
  versions, ``5-hour limit reached ∙ resets 2am``, ``You've hit your limit · resets 6:20pm
  (Europe/Berlin)``, ``Claude usage limit reached. Your limit will reset at 5pm (Europe/Warsaw).``
  (a clock time, in the zone named in brackets or else the local one); as reported in
  anthropics/claude-code issues #4375, #7157, #54709, #6119.
* Codex: ``You've hit your usage limit. ... try again at 3:28 PM.`` (today, local time),
  ``... Try again at Aug 8th, 2026 12:30 PM.`` and, in older versions, ``try again in 3 days 6
  hours 57 minutes.`` (``UsageLimitReachedError``'s ``Display`` and ``format_retry_timestamp`` in
  ``codex-rs/core/src/error.rs``, openai/codex).
* Gemini CLI: Google's 429 ``RESOURCE_EXHAUSTED`` error, whose ``RetryInfo`` gives a
  ``retryDelay`` such as ``"34s"`` (``packages/core/src/utils/googleQuotaErrors.ts``,
  google-gemini/gemini-cli), often printed as ``Please retry in 27.5s``.
* aider: litellm's ``RateLimitError`` ("The API provider has rate limited you. Try again later
  or check your quotas.", ``aider/exceptions.py``): no reset time.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: How long the loop waits when a CLI hit a limit without saying when it lifts: one hour, long
#: enough for per-minute rate limits and short enough to retry a rolling (5-hour) window early.
DEFAULT_USAGE_LIMIT_WAIT = timedelta(hours=1)

_EPOCH = re.compile(r"\|(\d{9,11})\b")
_CLOCK = r"(\d{1,2})(?::(\d{2}))?\s*([ap]\.?m\.?)?"
_RESETS_AT = re.compile(rf"\breset(?:s)?(?:\s+at)?\s+{_CLOCK}(?:\s*\(([^)]+)\))?", re.IGNORECASE)
_TRY_AGAIN_AT_DATE = re.compile(
    r"try again at ([A-Z][a-z]{2}) (\d{1,2})(?:st|nd|rd|th)?, (\d{4}) " + _CLOCK, re.IGNORECASE
)
_TRY_AGAIN_AT_TIME = re.compile(r"try again at " + _CLOCK, re.IGNORECASE)
_TRY_AGAIN_IN = re.compile(
    r"try again in\s+(?:(\d+)\s*days?)?[\s,]*(?:(\d+)\s*hours?)?[\s,]*(?:(\d+)\s*min(?:ute)?s?)?"
    r"[\s,]*(?:(\d+)\s*sec(?:ond)?s?)?",
    re.IGNORECASE,
)
_RETRY_DELAY = re.compile(
    r"(?:retry in|retryDelay\"?\s*[:=]\s*\"?)\s*(\d+(?:\.\d+)?)\s*(ms|s)\b", re.IGNORECASE
)
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1
    )
}


def local_zone() -> tzinfo:
    """This machine's time zone (the one a CLI on it formats its local times in)."""
    zone = datetime.now().astimezone().tzinfo
    return zone if zone is not None else UTC


def _hour(hour: str, minute: str | None, meridiem: str | None) -> tuple[int, int] | None:
    h, m = int(hour), int(minute or 0)
    if meridiem:
        if not 1 <= h <= 12:
            return None
        h = h % 12 + (12 if meridiem.lower().startswith("p") else 0)
    if h > 23 or m > 59:
        return None
    return h, m


def _next_clock_time(hour: int, minute: int, zone: tzinfo, now: datetime) -> datetime:
    """The first ``hour:minute`` in ``zone`` after ``now`` (today or tomorrow), in UTC."""
    local_now = now.astimezone(zone)
    candidate = local_now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if candidate <= local_now:
        candidate += timedelta(days=1)
    return candidate.astimezone(UTC)


def _zone(name: str | None) -> tzinfo:
    if name:
        try:
            return ZoneInfo(name.strip())
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return local_zone()


def claude_resets_at(message: str, now: datetime) -> datetime | None:
    """The reset time in a Claude Code usage-limit message (see the module docstring), UTC."""
    if (epoch := _EPOCH.search(message)) is not None:
        return datetime.fromtimestamp(int(epoch.group(1)), tz=UTC)
    if (clock := _RESETS_AT.search(message)) is not None and (clock.group(2) or clock.group(3)):
        hm = _hour(clock.group(1), clock.group(2), clock.group(3))
        if hm is not None:
            return _next_clock_time(*hm, _zone(clock.group(4)), now)
    return None


def codex_resets_at(message: str, now: datetime) -> datetime | None:
    """The reset time in a Codex usage-limit message (see the module docstring), UTC."""
    if (dated := _TRY_AGAIN_AT_DATE.search(message)) is not None:
        month = _MONTHS.get(dated.group(1).lower())
        hm = _hour(dated.group(4), dated.group(5), dated.group(6))
        if month is not None and hm is not None:
            try:
                local = datetime(int(dated.group(3)), month, int(dated.group(2)), *hm, tzinfo=local_zone())
            except ValueError:
                return None
            return local.astimezone(UTC)
    if (clock := _TRY_AGAIN_AT_TIME.search(message)) is not None and (clock.group(2) or clock.group(3)):
        hm = _hour(clock.group(1), clock.group(2), clock.group(3))
        if hm is not None:
            return _next_clock_time(*hm, local_zone(), now)
    if (after := _TRY_AGAIN_IN.search(message)) is not None and any(after.groups()):
        days, hours, minutes, seconds = (int(part or 0) for part in after.groups())
        return now + timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    return None


def retry_delay_resets_at(message: str, now: datetime) -> datetime | None:
    """``now`` plus a ``retry in 27.5s`` / ``"retryDelay": "34s"`` delay in ``message``, UTC."""
    if (delay := _RETRY_DELAY.search(message)) is None:
        return None
    amount = float(delay.group(1))
    seconds = amount / 1000 if delay.group(2).lower() == "ms" else amount
    return now + timedelta(seconds=seconds)


# Failure causes read from a failed CLI's error text (issue 15.3), checked in this order: an
# authentication error (HTTP 401/403, Anthropic's ``authentication_error``, OpenAI's
# ``invalid_api_key``, Google's ``API_KEY_INVALID``, Claude Code's "Invalid API key · Please run
# /login", Codex's "Not logged in"), a rate limit (HTTP 429, ``rate_limit_error``, "Too Many
# Requests"), a provider outage (HTTP 500/502/503/504/529, Anthropic's ``overloaded_error``,
# "Service Unavailable", a refused or reset connection).
_AUTHENTICATION = re.compile(
    r"\b40[13]\b|authentication[_ ](?:error|failed)|unauthori[sz]ed|invalid[_ ](?:x-)?api[_ -]?key|"
    r"incorrect api key|api_key_invalid|not logged in|please run /login|oauth token has expired|"
    r"invalid (?:bearer )?token|credentials? (?:are |is )?(?:missing|invalid|expired)",
    re.IGNORECASE,
)
_RATE_LIMIT = re.compile(r"\b429\b|rate[_ ]limit|too many requests", re.IGNORECASE)
_OUTAGE = re.compile(
    r"\b(?:500|502|503|504|529)\b|overloaded|service unavailable|internal server error|bad gateway|"
    r"gateway timeout|connection (?:error|refused|reset)|econnreset|econnrefused|etimedout",
    re.IGNORECASE,
)


def error_cause(message: str) -> str | None:
    """The failure cause an agent CLI's error ``message`` names: ``"AUTHENTICATION"``,
    ``"RATE_LIMIT"`` or ``"PROVIDER_OUTAGE"`` (an :class:`~loopwright.models.AgentFailureCause`
    value), or None when it names none of them (the caller reads it as a crash)."""
    if _AUTHENTICATION.search(message):
        return "AUTHENTICATION"
    if _RATE_LIMIT.search(message):
        return "RATE_LIMIT"
    if _OUTAGE.search(message):
        return "PROVIDER_OUTAGE"
    return None


def retry_after_seconds(message: str) -> float | None:
    """Seconds a ``retry in 27.5s`` / ``"retryDelay": "34s"`` delay in ``message`` asks to wait."""
    if (delay := _RETRY_DELAY.search(message)) is None:
        return None
    amount = float(delay.group(1))
    return amount / 1000 if delay.group(2).lower() == "ms" else amount
