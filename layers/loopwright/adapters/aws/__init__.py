"""AWS adapters behind the ports: DynamoDB, AgentCore Memory, Verified Permissions, Code Interpreter.

Each adapter imports boto3 (and the bedrock-agentcore SDK where needed), so import the module
you use (``loopwright.adapters.aws.dynamodb_store``...), not this package, to keep the others'
dependencies optional. Errors from AWS are re-raised as loopwright domain errors ``from`` the
botocore error, mapped by its error code (:mod:`loopwright.adapters.aws._errors`).
"""
