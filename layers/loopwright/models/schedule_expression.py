"""Recurring EventBridge Scheduler expressions for ``LoopConfig.schedule`` (AWS only).

The syntax checked here is Scheduler's ("Schedule types on EventBridge Scheduler", EventBridge
Scheduler User Guide; ``ScheduleExpression`` in the Scheduler API reference):

- ``rate(value unit)``: ``value`` a positive integer, ``unit`` one of ``minute | minutes | hour |
  hours | day | days`` (singular when the value is 1, plural otherwise);
- ``cron(minutes hours day-of-month month day-of-week year)``: six fields separated by white space;
  minutes 0-59, hours 0-23, day-of-month 1-31, month 1-12 or JAN-DEC, day-of-week 1-7 or SUN-SAT,
  year 1970-2199; wildcards ``, - * /`` everywhere, ``?`` in day-of-month and day-of-week (one of
  them must be ``?``: ``*`` in both is refused), ``L W`` in day-of-month, ``L #`` in day-of-week.

One-time ``at(...)`` expressions are refused: a loop's one-time resume is scheduled by the loop
itself (``loopwright.cloud.schedule``). Checking here turns a typo into a config error naming the
field, not a failed ``CreateSchedule`` once the loop runs.
"""

from __future__ import annotations

import re

_RATE = re.compile(r"rate\((?P<value>[1-9][0-9]{0,5}) (?P<unit>minutes?|hours?|days?)\)")
_CRON = re.compile(r"cron\((?P<fields>[^()]*)\)")
_MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"
_DAYS = "SUN|MON|TUE|WED|THU|FRI|SAT"
#: Per cron field: its name and the pattern of one comma-separated part of it.
_CRON_FIELDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("minutes", re.compile(r"\*|\d{1,2}(-\d{1,2})?(/\d{1,2})?|\*/\d{1,2}")),
    ("hours", re.compile(r"\*|\d{1,2}(-\d{1,2})?(/\d{1,2})?|\*/\d{1,2}")),
    ("day-of-month", re.compile(r"\*|\?|L|LW|\d{1,2}W|\d{1,2}(-\d{1,2})?(/\d{1,2})?|\*/\d{1,2}")),
    ("month", re.compile(rf"\*|(\d{{1,2}}|{_MONTHS})(-(\d{{1,2}}|{_MONTHS}))?(/\d{{1,2}})?|\*/\d{{1,2}}")),
    ("day-of-week", re.compile(rf"\*|\?|L|(\d|{_DAYS})(L|#[1-5])?|(\d|{_DAYS})(-(\d|{_DAYS}))?(/\d)?")),
    ("year", re.compile(r"\*|\d{4}(-\d{4})?(/\d{1,3})?|\*/\d{1,3}")),
)
_RANGES = {"minutes": (0, 59), "hours": (0, 23), "day-of-month": (1, 31), "month": (1, 12)}
_RANGES |= {"day-of-week": (1, 7), "year": (1970, 2199)}


def _check_rate(value: int, unit: str) -> None:
    if (value == 1) != (not unit.endswith("s")):
        plural = "singular" if value == 1 else "plural"
        raise ValueError(f"rate: a value of {value} takes the {plural} unit, not {unit!r}")


def _check_cron_field(name: str, pattern: re.Pattern[str], text: str) -> None:
    low, high = _RANGES[name]
    for part in text.split(","):
        if pattern.fullmatch(part) is None:
            raise ValueError(f"cron: {name} field {text!r} is not valid")
        head = part.split("/")[0]
        for number in re.findall(r"\d+", head if "#" not in head else head.split("#")[0]):
            if not low <= int(number) <= high:
                raise ValueError(f"cron: {name} value {number} is outside {low}-{high}")


def check_schedule_expression(expression: str) -> str:
    """``expression`` when it is a valid recurring ``rate(...)`` or ``cron(...)`` expression;
    raises ``ValueError`` saying what is wrong otherwise (module docstring)."""
    rate = _RATE.fullmatch(expression)
    if rate is not None:
        _check_rate(int(rate["value"]), rate["unit"])
        return expression
    cron = _CRON.fullmatch(expression)
    if cron is None:
        raise ValueError(
            'expected a recurring EventBridge Scheduler expression: "rate(<n> minute(s)|hour(s)|day(s))" '
            'or "cron(<minutes> <hours> <day-of-month> <month> <day-of-week> <year>)"'
        )
    fields = cron["fields"].split()
    if len(fields) != len(_CRON_FIELDS):
        raise ValueError(
            "cron: six fields expected (minutes hours day-of-month month day-of-week year), "
            f"got {len(fields)}"
        )
    for (name, pattern), text in zip(_CRON_FIELDS, fields, strict=True):
        _check_cron_field(name, pattern, text.upper())
    day_of_month, day_of_week = fields[2], fields[4]
    if "?" not in (day_of_month, day_of_week):
        raise ValueError("cron: one of day-of-month and day-of-week must be '?'")
    if day_of_month == day_of_week == "?":
        raise ValueError("cron: day-of-month and day-of-week cannot both be '?'")
    return expression
