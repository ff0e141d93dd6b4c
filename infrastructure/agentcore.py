"""Amazon Bedrock AgentCore: a Memory for checkpoints and a Code Interpreter for exit conditions.

- Memory (``AWS::BedrockAgentCore::Memory``): short-term events only (no strategies); each
  checkpoint is one blob event (:mod:`loopwright.adapters.aws.memory_checkpoints`), expiring after
  ``loopwright:memoryExpiryDays`` days. Encrypted with the service's key.
- Code Interpreter (``AWS::BedrockAgentCore::CodeInterpreterCustom``): each loop's session clones
  the loop's repository, runs its command agent and its exit conditions. Network mode
  ``loopwright:codeInterpreterNetwork``: PUBLIC (default; the session must reach the git remote)
  or SANDBOX (no network but Amazon S3: only for loops whose checks need nothing from outside
  and whose workspace is not cloned, i.e. not the AWS workspace of today).

The statements a function needs on them come from :meth:`AgentCore.memory_statement` and
:meth:`AgentCore.code_interpreter_statement`, each scoped to the one resource's ARN.
"""

from __future__ import annotations

import re

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_bedrockagentcore as agentcore
from aws_cdk import aws_iam as iam
from constructs import Construct

#: Code Interpreter network modes offered (VPC needs subnets: not offered yet).
NETWORK_MODES = ("PUBLIC", "SANDBOX")

#: Data-plane actions of the checkpoint store (CreateEvent, ListEvents, GetEvent, DeleteEvent;
#: ListSessions lists the loops with checkpoints).
MEMORY_ACTIONS = [
    "bedrock-agentcore:CreateEvent",
    "bedrock-agentcore:GetEvent",
    "bedrock-agentcore:ListEvents",
    "bedrock-agentcore:DeleteEvent",
    "bedrock-agentcore:ListSessions",
]
#: Session actions of the Code Interpreter sandbox.
CODE_INTERPRETER_ACTIONS = [
    "bedrock-agentcore:StartCodeInterpreterSession",
    "bedrock-agentcore:InvokeCodeInterpreter",
    "bedrock-agentcore:StopCodeInterpreterSession",
    "bedrock-agentcore:GetCodeInterpreterSession",
]


def resource_name(stack_name: str, suffix: str) -> str:
    """A name AgentCore accepts (``[a-zA-Z][a-zA-Z0-9_]{0,47}``) unique per stack."""
    cleaned = re.sub(r"[^a-zA-Z0-9_]", "_", f"{stack_name}_{suffix}")
    return cleaned[:48]


class AgentCore(Construct):
    """:attr:`memory` and :attr:`code_interpreter`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        memory_expiry_days: int,
        removal_policy: RemovalPolicy,
        network_mode: str = "PUBLIC",
    ) -> None:
        super().__init__(scope, construct_id)
        if network_mode not in NETWORK_MODES:
            raise ValueError(
                f"context loopwright:codeInterpreterNetwork: {network_mode!r} is not one of "
                + ", ".join(NETWORK_MODES)
            )
        stack_name = Stack.of(self).stack_name
        self.memory = self._build_memory(stack_name, memory_expiry_days)
        self.code_interpreter = self._build_code_interpreter(stack_name, network_mode)
        self.memory.apply_removal_policy(removal_policy)

    def _build_memory(self, stack_name: str, expiry_days: int) -> agentcore.CfnMemory:
        return agentcore.CfnMemory(
            self,
            "CheckpointMemory",
            name=resource_name(stack_name, "checkpoints"),
            description="loopwright checkpoints: one blob event per checkpoint, session = loop id",
            event_expiry_duration=expiry_days,
        )

    def _build_code_interpreter(
        self, stack_name: str, network_mode: str
    ) -> agentcore.CfnCodeInterpreterCustom:
        return agentcore.CfnCodeInterpreterCustom(
            self,
            "ConditionSandbox",
            name=resource_name(stack_name, "conditions"),
            description="loopwright workspaces: the loop's clone, command agent and exit conditions",
            network_configuration=agentcore.CfnCodeInterpreterCustom.CodeInterpreterNetworkConfigurationProperty(
                network_mode=network_mode
            ),
        )

    def memory_statement(self) -> iam.PolicyStatement:
        """Read and write checkpoint events of this Memory only."""
        return iam.PolicyStatement(actions=MEMORY_ACTIONS, resources=[self.memory.attr_memory_arn])

    def session_stop_statement(self) -> iam.PolicyStatement:
        """``StopCodeInterpreterSession`` alone on the Code Interpreter: for the steps that end or
        park a loop (they stop its session, and start or use none)."""
        return iam.PolicyStatement(
            actions=["bedrock-agentcore:StopCodeInterpreterSession"],
            resources=[self.code_interpreter.attr_code_interpreter_arn],
        )

    def code_interpreter_statement(self) -> iam.PolicyStatement:
        """Run sessions of this Code Interpreter only."""
        return iam.PolicyStatement(
            actions=CODE_INTERPRETER_ACTIONS, resources=[self.code_interpreter.attr_code_interpreter_arn]
        )
