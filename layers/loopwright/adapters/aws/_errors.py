"""Mapping of botocore errors to loopwright domain errors, by error code (never by message).

Throttling is retried by botocore's ``standard`` retry mode before it reaches this module
(:func:`retry_config`); what arrives here has exhausted its attempts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from loopwright.exceptions import LoopFrameworkError

#: Attempts per call (the first plus retries) in botocore's standard retry mode. botocore's own
#: default for standard mode is 3; 5 rides out short throttling bursts (about 0.1 s to 20 s of
#: exponential backoff with jitter between attempts, per botocore's standard mode).
DEFAULT_MAX_ATTEMPTS = 5

#: Error codes of throttling (the services' own names; botocore retries these in standard mode).
THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",  # DynamoDB
        "RequestLimitExceeded",  # DynamoDB (account level)
        "ThrottlingException",  # DynamoDB, Verified Permissions, Code Interpreter
        "ThrottledException",  # AgentCore Memory
        "Throttling",
        "TooManyRequestsException",
    }
)
#: Error codes meaning that the caller lacks permission.
ACCESS_CODES = frozenset({"AccessDeniedException", "UnrecognizedClientException", "AccessDenied"})


def retry_config(max_attempts: int = DEFAULT_MAX_ATTEMPTS, **kwargs: Any) -> Config:
    """A botocore :class:`Config` with standard-mode retries and ``max_attempts`` attempts in
    total (1: no retry, for non-idempotent calls); ``kwargs`` go to :class:`Config` (timeouts).

    It sets ``total_max_attempts``: botocore reads the ``max_attempts`` key of ``retries`` as the
    number of *retries* (``{"max_attempts": 1}`` sends a request twice; measured with a
    throttling endpoint, botocore 1.44).
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    return Config(retries={"mode": "standard", "total_max_attempts": max_attempts}, **kwargs)


def error_code(exc: ClientError) -> str:
    """The service's error code of ``exc`` (for example ``ConditionalCheckFailedException``)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def domain_error(exc: ClientError | BotoCoreError, action: str) -> LoopFrameworkError:
    """A :class:`LoopFrameworkError` for ``exc`` raised while doing ``action`` (for example
    "saving loop 'l1' in DynamoDB table 'loops'"); the message says what to check."""
    if isinstance(exc, BotoCoreError):
        return LoopFrameworkError(f"{action} failed: {exc}; check the network and the AWS endpoint")
    code = error_code(exc)
    detail = exc.response.get("Error", {}).get("Message", "") or str(exc)
    if code in THROTTLING_CODES:
        hint = "AWS throttled the call after all retries; retry later or raise the capacity or quota"
    elif code in ACCESS_CODES:
        hint = "the caller's IAM role lacks a permission for it"
    elif code == "ResourceNotFoundException":
        hint = "the resource does not exist; check its name or id and that the stack is deployed"
    elif code in {"ValidationException", "InvalidInputException"}:
        hint = "AWS rejected the request as invalid"
    else:
        hint = "see the AWS error code"
    return LoopFrameworkError(f"{action} failed ({code}: {detail}); {hint}")


@contextmanager
def aws_errors(action: str) -> Iterator[None]:
    """Re-raise botocore errors inside the block as :func:`domain_error` ``from`` them."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise domain_error(exc, action) from exc
