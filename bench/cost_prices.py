"""AWS list prices the cost benchmark (``bench/bench_cost.py``) uses, each with where and when it
was read, and the table that prices a run's counts per iteration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Bytes CloudWatch Logs counts for each log event besides its message ("the sum of its message
#: plus 26 bytes", CloudWatch pricing page, Logs).
LOG_EVENT_OVERHEAD_BYTES = 26
#: Bytes of the lines Lambda itself logs for each invocation (START, END, REPORT with the X-Ray
#: trace id: about 370 bytes in their documented format), plus three events' overhead.
LAMBDA_PLATFORM_LOG_BYTES = 370 + 3 * LOG_EVENT_OVERHEAD_BYTES

#: Target of the seed brief: orchestration cost per 1,000 iterations, excluding model tokens
#: and the checks' (and agent's) own compute.
TARGET_USD_PER_1000 = 0.20
_DATE_READ = "2026-11-23"


@dataclass(frozen=True)
class Price:
    """One AWS list price (USD per ``unit``), us-east-1, with where and when it was read."""

    usd: float
    unit: str
    source: str
    read_on: str = _DATE_READ


#: $0.0250 per 1,000 state transitions, US East (N. Virginia), Standard workflows.
STEP_FUNCTIONS_TRANSITION = Price(
    0.025 / 1000, "state transition", "https://aws.amazon.com/step-functions/pricing/"
)
#: $0.20 per 1M requests (same for x86 and Arm). The AWS page renders its rate tables
#: client-side; the figure was read from pages quoting it (see README's sources).
LAMBDA_REQUEST = Price(
    0.20 / 1_000_000,
    "request",
    "https://aws.amazon.com/lambda/pricing/ (as quoted by "
    "https://git.mcrn.ar/mariano/lambda_local_runner/src/commit/"
    "957e45b8adae23ce50b966346229585b5df18b4d/docs/lambdas-md/lambda-13-cost.md)",
)
#: Arm, first 7.5 billion GB-seconds a month: $0.0000133334 per GB-second.
LAMBDA_ARM_GB_SECOND = Price(
    0.0000133334,
    "GB-second (arm64)",
    "https://aws.amazon.com/lambda/pricing/ (as quoted by https://cloudchipr.com/blog/aws-lambda-pricing "
    "and artillery's lib/platform/aws-lambda/prices.js)",
)
#: On-demand, US East: $0.625 per million write request units (since the November 2024 cut).
DYNAMODB_WRU = Price(
    0.625 / 1_000_000,
    "write request unit",
    "https://aws.amazon.com/dynamodb/pricing/on-demand/ (rate as quoted by "
    "https://airbyte.com/data-engineering-resources/dynamodb-pricing)",
)
#: On-demand, US East: $0.125 per million read request units.
DYNAMODB_RRU = Price(
    0.125 / 1_000_000,
    "read request unit",
    "https://aws.amazon.com/dynamodb/pricing/on-demand/ (rate as quoted by "
    "https://airbyte.com/data-engineering-resources/dynamodb-pricing)",
)
#: Short-term memory: $0.25 per 1,000 new events (CreateEvent); reads are not billed. The AWS
#: page renders its tables client-side; the rate as AWS's own agent toolkit quotes that page.
AGENTCORE_MEMORY_EVENT = Price(
    0.25 / 1000,
    "new event",
    "https://aws.amazon.com/bedrock/agentcore/pricing/ (rate as quoted by AWS's agent toolkit: "
    "https://raw.githubusercontent.com/aws/agent-toolkit-for-aws/main/plugins/aws-agents/skills/"
    "agents-optimize/references/cost.md, 'Memory events ... $0.25 per 1,000 new events')",
)
#: "Single authorization requests ... each call to IsAuthorized or IsAuthorizedWithToken API is
#: metered as one request": $0.000005 per API request (since the 2024 price change).
VERIFIED_PERMISSIONS_SINGLE = Price(
    0.000005,
    "IsAuthorized request",
    "https://aws.amazon.com/verified-permissions/pricing/ (Single authorization requests)",
)
#: "each call to BatchIsAuthorized or BatchIsAuthorizedWithToken API is metered as one request,
#: irrespective of the number of authorizations": first 40 million a month $0.00015 per request.
VERIFIED_PERMISSIONS_BATCH = Price(
    0.00015,
    "BatchIsAuthorized request",
    "https://aws.amazon.com/verified-permissions/pricing/ (Batch authorization requests)",
)

#: CloudWatch Logs, Standard log class, US East: $0.50 per GB ingested (the Lambda functions'
#: logs, and the state machine's vended logs, whose first tier is the same rate).
CLOUDWATCH_LOGS_GB = Price(0.50, "GB ingested", "https://aws.amazon.com/cloudwatch/pricing/ (Logs, Standard)")

# ----------------------------------------------------------------------------- pricing
#: Table rows: label, key of ``per_iteration``, price (None: price not found).
ROWS: tuple[tuple[str, str, Price | None], ...] = (
    ("Step Functions state transitions", "state_transitions", STEP_FUNCTIONS_TRANSITION),
    ("Lambda requests", "lambda_invocations", LAMBDA_REQUEST),
    ("Lambda duration (GB-s, arm64)", "lambda_gb_seconds", LAMBDA_ARM_GB_SECOND),
    ("DynamoDB writes (WRU, tables)", "dynamodb_wru", DYNAMODB_WRU),
    ("DynamoDB writes (WRU, GSI by_type)", "dynamodb_gsi_wru", DYNAMODB_WRU),
    ("DynamoDB reads (RRU)", "dynamodb_rru", DYNAMODB_RRU),
    ("DynamoDB writes (WRU, idempotency)", "idempotency_wru", DYNAMODB_WRU),
    ("DynamoDB reads (RRU, idempotency)", "idempotency_rru", DYNAMODB_RRU),
    ("AgentCore Memory events", "memory_events", AGENTCORE_MEMORY_EVENT),
    ("Verified Permissions IsAuthorized", "avp_single_requests", VERIFIED_PERMISSIONS_SINGLE),
    ("Verified Permissions BatchIsAuthorized", "avp_batch_requests", VERIFIED_PERMISSIONS_BATCH),
    ("CloudWatch Logs ingested (GB)", "log_gb", CLOUDWATCH_LOGS_GB),
)


def price_table(per_iteration: Mapping[str, float]) -> dict[str, Any]:
    """Rows ``{item, per_iteration, unit_usd, unit, usd_per_1000}`` (``unit_usd`` and
    ``usd_per_1000`` None when the price was not found), the ``total`` of priced rows, and
    ``passed`` (total below :data:`TARGET_USD_PER_1000`)."""
    rows: list[dict[str, Any]] = []
    for label, key, price in ROWS:
        count = per_iteration.get(key, 0.0)
        rows.append(
            {
                "item": label,
                "per_iteration": count,
                "unit_usd": price.usd if price else None,
                "unit": price.unit if price else "",
                "usd_per_1000": count * 1000 * price.usd if price else None,
            }
        )
    total = float(sum(r["usd_per_1000"] for r in rows if r["usd_per_1000"] is not None))
    return {"rows": rows, "total": total, "passed": total < TARGET_USD_PER_1000}


def single_requests(per_iteration: Mapping[str, float]) -> dict[str, float]:
    """``per_iteration`` as if the Verified Permissions adapter asked each decision with its own
    ``IsAuthorized`` call instead of ``BatchIsAuthorized`` (cheaper since the 2024 price change:
    up to 30 single requests cost no more than one batch, whose quota is 30 requests)."""
    return {
        **per_iteration,
        "avp_single_requests": per_iteration["authorization_decisions"],
        "avp_batch_requests": 0.0,
    }


def verdict(table: Mapping[str, Any]) -> str:
    """``PASS ($x.xxxx)`` or ``MISS ($x.xxxx)``."""
    return f"{'PASS' if table['passed'] else 'MISS'} (${table['total']:.4f})"


def notes() -> list[str]:
    """What is excluded, and the prices with their sources."""
    lines = [
        "excluded: the agent's and the checks' own compute (sandbox time subtracted from handler "
        "time; the waiting for them is priced below), model tokens, Lambda cold starts, free "
        "tiers, storage, X-Ray, data transfer.",
        "handler durations are this machine's, not a Lambda's (512 MB is a fraction of a vCPU).",
        "",
        "prices (us-east-1 list, read " + _DATE_READ + "):",
    ]
    for label, _, price in ROWS:
        if price is not None:
            lines.append(f"  {label}: ${price.usd:.10f}".rstrip("0") + f" per {price.unit}: {price.source}")
    return lines
