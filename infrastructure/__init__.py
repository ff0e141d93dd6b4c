"""loopwright's AWS CDK app: the stack (:mod:`infrastructure.stack`) and its constructs."""
