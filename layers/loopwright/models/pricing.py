"""What an agent's tokens cost: a per-model price table in US dollars per million tokens.

A loop's cost (``LoopState.cost_usd``, limited by ``LoopConfig.cost_budget_usd``) is the agent's
own dollar figure when it gives one (Claude Code's ``total_cost_usd``, aider's ``Cost: $...``);
otherwise its tokens are priced here, by the model it names (``AgentResult.model``):

    cost = (input_tokens - cached_input_tokens) x input + cached_input_tokens x cached_input
           + output_tokens x output

with the prices in US dollars per million tokens (:class:`ModelPrice`). ``input_tokens`` count all
input tokens, those read from a cache included (OpenAI's and Google's convention, which the agent
backends follow: :mod:`loopwright.adapters.local.agents`); ``cached_input_tokens`` is that cached
part. A model that is in neither the user's ``prices`` nor
:data:`DEFAULT_PRICES` has no cost: its tokens still count against ``token_budget``, and the loop
says so once per model (a COST_UNKNOWN event) rather than invent a price.

The default figures are the providers' list prices for the standard (pay as you go) tier, at the
short-prompt rate where a provider charges more for long prompts (Gemini 2.5 Pro above 200,000
prompt tokens, GPT-5.5 above 272,000): the price of such requests is then a lower bound. Cache
writes (Anthropic bills them at 1.25x input) are priced as plain input. Each figure's source page
and the date it was read are in :data:`PRICE_SOURCES`. Prices change: set ``prices`` in
``loopwright.toml`` to correct or add a model, e.g.
``prices = { "my-model" = { input = 3.0, cached_input = 0.3, output = 15.0 } }``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

#: Highest price accepted, US dollars per million tokens (the dearest list price today is $180,
#: GPT-5.5 Pro output; a typo of a thousand times a real price is refused).
MAX_PRICE_PER_MILLION = 10_000.0

#: Tokens per priced unit.
TOKENS_PER_MILLION = 1_000_000

#: A model name as a price-table key: what the agent CLI reports, or its base name.
ModelName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    Field(description="model name, as the agent reports it (e.g. claude-sonnet-4-5, gpt-5.5)"),
]

_Price = Annotated[
    float,
    Field(ge=0, le=MAX_PRICE_PER_MILLION, allow_inf_nan=False, description="US dollars per million tokens"),
]


class ModelPrice(BaseModel):
    """One model's list prices, US dollars per million tokens.

    ``cached_input`` is the price of input tokens read from the provider's prompt cache; when
    omitted it is ``input`` (no cache discount assumed). Unknown fields are refused (a typo such
    as ``cache_input`` is an error naming it).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: _Price
    cached_input: _Price | None = None
    output: _Price

    @property
    def cached_input_price(self) -> float:
        """``cached_input``, or ``input`` when not given (US dollars per million tokens)."""
        return self.input if self.cached_input is None else self.cached_input

    def cost_usd(self, input_tokens: int, cached_input_tokens: int, output_tokens: int) -> float:
        """US dollars for these tokens (``input_tokens``: all input, ``cached_input_tokens`` of
        it read from a cache; a cached figure above the input is read as all input cached)."""
        return (
            max(0, input_tokens - cached_input_tokens) * self.input
            + cached_input_tokens * self.cached_input_price
            + output_tokens * self.output
        ) / TOKENS_PER_MILLION


# Source pages of the default figures, and the date each was read (with loopwright's search tool;
# secondary pages name the provider page they copy and were cross-checked against another source).
_ANTHROPIC = "https://platform.claude.com/docs/en/about-claude/pricing (model pricing table), read 2026-12-07"
_ANTHROPIC_MODELS = (
    "https://platform.claude.com/docs/en/models/<model>/overview (pricing box), read 2026-12-07"
)
_OPENAI = (
    "https://developers.openai.com/api/docs/pricing (standard, short context) as summarised by "
    "tokenmix.ai on 2026-06-04, matching OpenAI's Codex rate card (25 credits = $1, checked "
    "2026-05-13); read 2026-12-07"
)
_OPENAI_GPT5 = (
    "https://developers.openai.com/api/docs/pricing, gpt-5 family rows as listed by the "
    "openai-cost crate and fernando-nog.netlify.app (2026-05-05); read 2026-12-07"
)
_GOOGLE = (
    "https://ai.google.dev/gemini-api/docs/pricing (paid tier, prompts <= 200k tokens; context "
    "caching 10% of input) as summarised by deploybase.ai (March 2026); read 2026-12-07"
)
_GOOGLE_3 = (
    "https://ai.google.dev/gemini-api/docs/pricing (Gemini 3 Pro preview, prompts <= 200k "
    "tokens) as summarised by techjacksolutions.com (2026-06-09) and aifreeapi.com; read 2026-12-07"
)

# (source, {model: (input, cached_input, output)}), US dollars per million tokens.
_TABLE: tuple[tuple[str, dict[str, tuple[float, float, float]]], ...] = (
    (
        _ANTHROPIC,
        {
            "claude-fable-5-1": (10.0, 0.25, 50.0),
            "claude-opus-5": (5.0, 0.50, 25.0),
            "claude-opus-4-8": (5.0, 0.50, 25.0),
            "claude-opus-4-7": (5.0, 0.50, 25.0),
            "claude-opus-4-6": (5.0, 0.50, 25.0),
            "claude-opus-4-5": (5.0, 0.50, 25.0),
            "claude-opus-4-1": (15.0, 1.50, 75.0),
            "claude-opus-4": (15.0, 1.50, 75.0),
            "claude-sonnet-4-6": (3.0, 0.30, 15.0),
            "claude-sonnet-4-5": (3.0, 0.30, 15.0),
            "claude-sonnet-4": (3.0, 0.30, 15.0),
            "claude-3-7-sonnet": (3.0, 0.30, 15.0),
            "claude-haiku-4-5": (1.0, 0.10, 5.0),
            "claude-3-5-haiku": (0.80, 0.08, 4.0),
        },
    ),
    (
        _ANTHROPIC_MODELS,
        {
            # Opus 5.5: $4 / $20 with cache reads at 0.05x input.
            "claude-opus-5-5": (4.0, 0.20, 20.0),
            # Sonnet 5.5: the model page says $0.20 cache reads; some trackers report a cut to
            # $0.10 from 2026-10-07. The higher figure is kept (a budget errs on the safe side).
            "claude-sonnet-5-5": (2.0, 0.20, 10.0),
            "claude-sonnet-5": (2.0, 0.20, 10.0),
        },
    ),
    (
        _OPENAI,
        {
            "gpt-5.5": (5.0, 0.50, 30.0),
            "gpt-5.4": (2.50, 0.25, 15.0),
            "gpt-5.4-mini": (0.75, 0.075, 4.50),
            "gpt-5.4-nano": (0.20, 0.02, 1.25),
            "gpt-5.3-codex": (1.75, 0.175, 14.0),
            "gpt-5.2-codex": (1.75, 0.175, 14.0),
            "gpt-5.2": (1.75, 0.175, 14.0),
        },
    ),
    (
        _OPENAI_GPT5,
        {
            "gpt-5.1-codex-max": (1.25, 0.125, 10.0),
            "gpt-5.1-codex": (1.25, 0.125, 10.0),
            "gpt-5-codex": (1.25, 0.125, 10.0),
            "gpt-5.1": (1.25, 0.125, 10.0),
            "gpt-5": (1.25, 0.125, 10.0),
            "gpt-5-mini": (0.25, 0.025, 2.0),
        },
    ),
    (
        _GOOGLE,
        {
            "gemini-2.5-pro": (1.25, 0.125, 10.0),
            "gemini-2.5-flash": (0.30, 0.03, 2.50),
            "gemini-2.5-flash-lite": (0.10, 0.01, 0.40),
        },
    ),
    (
        _GOOGLE_3,
        {
            "gemini-3.1-pro-preview": (2.0, 0.20, 12.0),
            "gemini-3-pro-preview": (2.0, 0.20, 12.0),
        },
    ),
)

#: The built-in prices, by base model name (see :func:`base_model_name`).
DEFAULT_PRICES: Mapping[str, ModelPrice] = {
    model: ModelPrice(input=input_, cached_input=cached, output=output)
    for _, models in _TABLE
    for model, (input_, cached, output) in models.items()
}
#: Where each default price comes from, and when it was read.
PRICE_SOURCES: Mapping[str, str] = {model: source for source, models in _TABLE for model in models}

# Decorations around a base model name: a provider or router prefix ("anthropic/",
# "models/", "us.anthropic."), a context-window tag ("[1m]"), a Vertex "@<date>" or a dated
# snapshot ("-20250929", "-2026-04-01"), a Bedrock version ("-v1:0"), "-latest".
_PREFIX = re.compile(r"^(?:.*/)?(?:(?:(?:[a-z]{2}|global)\.)?anthropic\.)?")
_SUFFIXES = (
    re.compile(r"\[[^\]]*\]$"),
    re.compile(r"-v\d+(?::\d+)?$"),
    re.compile(r"@[\w.-]+$"),
    re.compile(r"-(?:\d{8}|\d{4}-\d{2}-\d{2})$"),
    re.compile(r"-latest$"),
)


def base_model_name(model: str) -> str:
    """The price-table name of ``model``: lower case, without a provider prefix, a dated snapshot
    or a context tag. ``"anthropic/claude-sonnet-4-5-20250929"`` -> ``"claude-sonnet-4-5"``,
    ``"claude-opus-4-6[1m]"`` -> ``"claude-opus-4-6"``, ``"models/gemini-2.5-pro"`` ->
    ``"gemini-2.5-pro"``."""
    name = _PREFIX.sub("", model.strip().lower())
    changed = True
    while changed:
        changed = False
        for suffix in _SUFFIXES:
            shorter = suffix.sub("", name)
            if shorter != name and shorter:
                name, changed = shorter, True
    return name


def price_for(model: str | None, prices: Mapping[str, ModelPrice] | None = None) -> ModelPrice | None:
    """The price of ``model``: the user's ``prices`` (by the exact name, then the base name) win
    over :data:`DEFAULT_PRICES` (by the base name). None when ``model`` is None or unknown."""
    if not model:
        return None
    overrides = prices or {}
    base = base_model_name(model)
    for table, key in ((overrides, model.strip()), (overrides, base), (DEFAULT_PRICES, base)):
        found = table.get(key)
        if found is not None:
            return found
    normalized = {base_model_name(name): price for name, price in overrides.items()}
    return normalized.get(base)


#: How an iteration's cost was found: the agent's own figure, its tokens priced, or no cost
#: because it used no tokens, named no model or an unknown one, or gave no token breakdown.
CostBasis = Literal["agent", "priced", "no_tokens", "no_model", "unknown_model", "no_breakdown"]


class IterationCost(NamedTuple):
    """One iteration's cost: ``cost_usd`` (US dollars; None when it cannot be told) and how it was
    found (:data:`CostBasis`)."""

    cost_usd: float | None
    basis: CostBasis


def iteration_cost(
    *,
    cost_usd: float | None,
    model: str | None,
    tokens_used: int,
    input_tokens: int,
    cached_input_tokens: int,
    output_tokens: int,
    prices: Mapping[str, ModelPrice] | None = None,
) -> IterationCost:
    """The cost of one agent run, from what the agent reported (``AgentResult``'s fields).

    The agent's ``cost_usd`` wins. Otherwise the tokens are priced with :func:`price_for`; no
    cost (None) when no model is named, the model has no price, or the agent gave ``tokens_used``
    without breaking it down into input, cached input and output (a guess could be 5x off).
    An agent that used no tokens cost nothing (0.0).
    """
    if cost_usd is not None:
        return IterationCost(cost_usd, "agent")
    if tokens_used == 0 and input_tokens == 0 and cached_input_tokens == 0 and output_tokens == 0:
        return IterationCost(0.0, "no_tokens")
    if not model:
        return IterationCost(None, "no_model")
    price = price_for(model, prices)
    if price is None:
        return IterationCost(None, "unknown_model")
    if input_tokens == 0 and cached_input_tokens == 0 and output_tokens == 0:
        return IterationCost(None, "no_breakdown")
    return IterationCost(price.cost_usd(input_tokens, cached_input_tokens, output_tokens), "priced")
