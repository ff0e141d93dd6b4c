#!/usr/bin/env python3
"""CDK app: ``cdk synth`` / ``cdk deploy`` (see infrastructure/README.md), or ``python app.py``
(synthesizes into ``cdk.out`` without the CDK CLI). cdk-nag's AwsSolutions checks run on every
synth; unacknowledged findings are reported as errors and warnings."""

from __future__ import annotations

import os

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infrastructure.constants import STACK_NAME
from infrastructure.stack import LoopwrightStack


def build_app(outdir: str | None = None) -> cdk.App:
    """The app with the loopwright stack and cdk-nag (account and region from the CLI's
    environment when set, else environment-agnostic)."""
    app = cdk.App(outdir=outdir)
    account, region = os.environ.get("CDK_DEFAULT_ACCOUNT"), os.environ.get("CDK_DEFAULT_REGION")
    env = cdk.Environment(account=account, region=region) if account and region else None
    LoopwrightStack(app, STACK_NAME, env=env, description="loopwright: governed autonomous loops")
    cdk.Validations.of(app).add_plugins(
        AwsSolutionsChecks(app, verbose=True, write_suppressions_to_cloud_formation=True)
    )
    return app


if __name__ == "__main__":
    # The CDK CLI passes its output folder in CDK_OUTDIR; alone, synthesize into ./cdk.out.
    build_app(None if "CDK_OUTDIR" in os.environ else "cdk.out").synth()
