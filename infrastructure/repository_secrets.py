"""Which Secrets Manager secrets the loop functions that clone and push may read: the HTTPS tokens
of private repositories (``repository.credentials.secret_arn`` in a loop's config).

CDK context ``loopwright:repositorySecretArns``: a list, or one comma-separated string, of full
secret ARNs (with the 6 random characters Secrets Manager appends to the name). The functions get
``secretsmanager:GetSecretValue`` on exactly those ARNs, never ``*``; unset, no statement is
added and a loop on a private repository fails with AccessDenied, naming this key. A secret
encrypted with a customer managed KMS key also needs ``kms:Decrypt`` for the function roles in
that key's policy (not granted here).
"""

from __future__ import annotations

import re

from aws_cdk import aws_iam as iam

#: Context key: the secret ARNs the cloning functions may read.
CTX_REPOSITORY_SECRET_ARNS = "loopwright:repositorySecretArns"
#: A full secret ARN: name, a hyphen and the 6 random characters (IAM matches the ARN exactly).
FULL_SECRET_ARN = re.compile(
    r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]{1,512}-[A-Za-z0-9]{6}"
)


def repository_secret_arns(value: object) -> list[str]:
    """The ARNs of :data:`CTX_REPOSITORY_SECRET_ARNS` (``value``: None, a list, or a string with
    commas). Raises ValueError naming the context key for a value that is not a full secret ARN."""
    items = value if isinstance(value, list) else str(value or "").split(",")
    arns = [str(item).strip() for item in items if str(item).strip()]
    for arn in arns:
        if FULL_SECRET_ARN.fullmatch(arn) is None:
            raise ValueError(
                f"context {CTX_REPOSITORY_SECRET_ARNS}: {arn!r} is not the full ARN of a Secrets Manager "
                "secret (arn:aws:secretsmanager:<region>:<account>:secret:<name>-<6 characters>, as "
                "`aws secretsmanager describe-secret` prints it)"
            )
    return arns


def repository_secrets_statement(arns: list[str]) -> iam.PolicyStatement:
    """``GetSecretValue`` on exactly ``arns``."""
    return iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"], resources=list(arns))
