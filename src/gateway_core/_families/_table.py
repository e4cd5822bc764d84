"""The model families the gateway reads the output of: how each is recognised, and
how it writes thinking, tool calls and the end of its turn.

A model is matched once, when its answer is set up (``family_for``): by its chat
template's fingerprint (text only that family's templates hold), else by its GGUF
architecture, else by whether its template mentions tools at all. The match decides
the parser for the whole answer; nothing is guessed from the answer itself. Order
matters: Qwen3-Coder's template also holds ``<tool_call>``, so it is tried before
Qwen3's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from .._call_forms import CallForms
from .._thinking import CLOSING_TAG, OPENING_TAG, prompt_opens_thinking
from .._tool_calls import Toolbox
from . import _deepseek as deepseek
from . import _forced_forms as forms
from ._grammar import FORMATS, CallGrammar, ToolFormat
from ._harmony import END_TAGS as HARMONY_END_TAGS
from ._harmony import harmony_forced_opening, harmony_parser
from ._marked import ToolCallParser
from ._parser import OutputParser, ParserSetup, TaggedParser
from ._qwen3_coder import GRAMMAR as QWEN3_CODER_GRAMMAR

__all__ = ["FAMILIES", "Family", "family_for", "family_named"]

_THINK = (OPENING_TAG, CLOSING_TAG)
_MISTRAL_THINK = ("[THINK]", "[/THINK]")


def _as_answer(opening: str | None) -> str | None:
    """A forced call opens where an answer would."""
    return opening


@dataclass(frozen=True, slots=True, kw_only=True)
class Family:
    """One family's output format.

    Attributes:
        name: how docs and an explicit choice name it.
        fingerprints: text that, all of it in a chat template, says the family.
        architectures: GGUF ``general.architecture`` values that say it when the
            template does not.
        thinking: its thinking markers (opening, closing), if it writes them inline.
        calls: its tool-call grammar, if its calls are inline markup.
        calls_in_thinking: a call may open before the thinking closes (Qwen3).
        end_markers: the tokens that end its turn (documentation: the runner stops
            at them, as end-of-generation tokens).
        lazy: the runner's lazy JSON constraint fits its calls: the first marker
            and the closing tag frame one JSON call (``ToolCallConstraint``).
        lazy_at: (marker, closing) for that constraint when it is not the
            grammar's first marker: the ``json`` family constrains a bare call at
            the start of the answer, not every ```` ```json ```` block it writes.
        grants: capabilities the family has whatever its template's text says.
        machine: a parser of its own (harmony), in place of tags and markers.
        forced: a forced call's form for one tool, in the family's own markup
            (``_forced_forms``); None: the bare JSON call, constrained by schema.
        forced_opening: what pass 2 writes before a forced call, from what it
            would write before an answer (harmony: a new message, not the final
            channel).
        example: one call as the model writes it, for the docs.
    """

    name: str
    fingerprints: tuple[str, ...] = ()
    architectures: tuple[str, ...] = ()
    thinking: tuple[str, str] | None = _THINK
    calls: CallGrammar | None = None
    calls_in_thinking: bool = False
    end_markers: tuple[str, ...] = ()
    lazy: bool = False
    lazy_at: tuple[str, str] | None = None
    grants: frozenset[str] = frozenset()
    machine: Callable[[ParserSetup], OutputParser] | None = None
    forced: forms.FormBuilder | None = None
    forced_opening: Callable[[str | None], str | None] = _as_answer
    example: str = ""

    def recognises(self, template: str) -> bool:
        return bool(self.fingerprints) and all(f in template for f in self.fingerprints)

    def capabilities(self, template: str) -> frozenset[str]:
        """What this family can do with this template: its grants, and thinking
        when the template holds both its thinking markers (Ollama's heuristic for
        ``<think>``, with the family's own markers)."""
        found = set(self.grants)
        if self.thinking and all(tag in template for tag in self.thinking):
            found.add("thinking")
        return frozenset(found)

    @property
    def lazy_markers(self) -> tuple[str, str] | None:
        """(marker, closing) for the runner's lazy constraint, if it fits."""
        if not self.lazy or self.calls is None:
            return None
        if self.lazy_at is not None:
            return self.lazy_at
        marker = self.calls.markers[0] if self.calls.markers else ""
        return marker, self.calls.closing

    def forced_forms(self, offered: Toolbox, chosen: Sequence[str]) -> CallForms | None:
        """The forms of a forced call to one of ``chosen``; None: the JSON call
        (the family has no markup of its own, or it cannot hold a name)."""
        if self.forced is None:
            return None
        return forms.tool_forms(self.forced, offered, chosen)

    def opens_thinking(self, prompt: str) -> bool:
        """The prompt ends inside thinking: the output starts there."""
        return self.thinking is not None and prompt_opens_thinking(
            prompt, self.thinking[0]
        )

    def parser(self, setup: ParserSetup) -> OutputParser:
        """The parser of one answer."""
        if self.machine is not None:
            return self.machine(setup)
        calls = None
        if self.calls is not None and setup.tools is not None:
            calls = ToolCallParser(self.calls, tools=setup.tools, id_seed=setup.id_seed)
        call_tags = None
        if self.calls_in_thinking and self.calls is not None and self.calls.closing:
            call_tags = (self.calls.markers[0], self.calls.closing)
        return TaggedParser.of(
            setup,
            tags=self.thinking,
            calls=calls,
            call_tags=call_tags,
            opens=setup.thinking and self.opens_thinking(setup.prompt),
        )


_MISTRAL_V11 = CallGrammar(
    markers=("[TOOL_CALLS]",),
    head="[ARGS]",
    head_id="[CALL_ID]",
    trailer="[/TOOL_CALLS]",
)
_LLAMA3 = CallGrammar(markers=("<|python_tag|>",), bare=True)

HARMONY = Family(
    name="harmony",
    fingerprints=("<|channel|>", "<|message|>"),
    architectures=("gpt-oss",),
    thinking=None,
    end_markers=HARMONY_END_TAGS,
    grants=frozenset({"thinking", "tools"}),
    machine=harmony_parser,
    forced=forms.harmony_form,
    forced_opening=harmony_forced_opening,
    example="<|channel|>commentary to=functions.get_weather <|constrain|>json"
    '<|message|>{"city":"Paris"}<|call|>',
)
QWEN3_CODER = Family(
    name="qwen3-coder",
    fingerprints=("<function=", "<parameter="),
    calls=QWEN3_CODER_GRAMMAR,
    end_markers=("<|im_end|>",),
    forced=forms.qwen3_coder_form,
    example="<tool_call><function=get_weather><parameter=city>Paris</parameter>"
    "</function></tool_call>",
)
DEEPSEEK = Family(
    name="deepseek",
    fingerprints=(deepseek.CALLS_BEGIN,),
    calls=deepseek.GRAMMAR,
    end_markers=(deepseek.END_OF_SENTENCE,),
    forced=forms.deepseek_form,
    example=f"{deepseek.CALLS_BEGIN}{deepseek.CALL_BEGIN}function{deepseek.SEPARATOR}"
    f'get_weather\\n```json\\n{{"city":"Paris"}}\\n```{deepseek.CALL_END}'
    f"{deepseek.CALLS_END}",
)
MISTRAL_V11 = Family(
    name="mistral-v11",
    fingerprints=("[TOOL_CALLS]", "[ARGS]"),
    thinking=_MISTRAL_THINK,
    calls=_MISTRAL_V11,
    end_markers=("</s>",),
    forced=forms.mistral_v11_form,
    example='[TOOL_CALLS]get_weather[ARGS]{"city":"Paris"}',
)
MISTRAL = Family(
    name="mistral",
    fingerprints=("[TOOL_CALLS]",),
    thinking=_MISTRAL_THINK,
    calls=FORMATS[ToolFormat.MISTRAL],
    end_markers=("</s>",),
    lazy=True,
    forced=forms.listed_form("[TOOL_CALLS]"),
    example='[TOOL_CALLS][{"name":"get_weather","arguments":{"city":"Paris"}}]',
)
QWEN3 = Family(
    name="qwen3",
    fingerprints=("<tool_call>", OPENING_TAG),
    architectures=("qwen3", "qwen3moe"),
    calls=FORMATS[ToolFormat.HERMES],
    calls_in_thinking=True,
    end_markers=("<|im_end|>",),
    lazy=True,
    forced=forms.hermes_form,
    example='<tool_call>\\n{"name":"get_weather","arguments":{"city":"Paris"}}\\n'
    "</tool_call>",
)
HERMES = Family(
    name="hermes",
    fingerprints=("<tool_call>",),
    calls=FORMATS[ToolFormat.HERMES],
    end_markers=("<|im_end|>",),
    lazy=True,
    forced=forms.hermes_form,
    example='<tool_call>\\n{"name":"get_weather","arguments":{"city":"Paris"}}\\n'
    "</tool_call>",
)
LLAMA3 = Family(
    name="llama3",
    fingerprints=("<|start_header_id|>",),
    calls=_LLAMA3,
    end_markers=("<|eot_id|>", "<|eom_id|>"),
    lazy=True,
    forced=forms.llama3_form,
    example='<|python_tag|>{"name":"get_weather","parameters":{"city":"Paris"}}',
)
# Templates that teach a call format of their own by a prefix before the JSON.
FUNCTOOLS = Family(
    name="functools",
    fingerprints=("functools[",),
    calls=CallGrammar(markers=("functools",), bare=True),
    forced=forms.listed_form("functools"),
    # Only the bracket makes it a call: prose about Python's functools is not one.
    lazy=True,
    lazy_at=("functools[", "]"),
    example='functools[{"name":"get_weather","arguments":{"city":"Paris"}}]',
)
TOOL_CALL_PREFIX = Family(
    name="tool-call-prefix",
    fingerprints=("[TOOL_CALL]",),
    calls=CallGrammar(markers=("[TOOL_CALL]",), bare=True),
    forced=forms.listed_form("[TOOL_CALL]", " "),
    lazy=True,
    example='[TOOL_CALL] [{"name":"get_weather","arguments":{"city":"Paris"}}]',
)
ACTION_JSON = Family(
    name="action-json",
    fingerprints=("Action: ```json",),
    calls=CallGrammar(markers=("```json",), closing="```", bare=True),
    forced=forms.action_json_form,
    # The template's own prefix, not every ```json block the model writes.
    lazy=True,
    lazy_at=("Action: ```json", "```"),
    example='Action: ```json\n{"name":"get_weather","arguments":{}}\n```',
)
JSON = Family(
    name="json",
    # A call as the first thing in the answer (ToolFormat.JSON), or in a ```json
    # fence anywhere; a fence whose JSON is no call of an offered tool stays content.
    calls=CallGrammar(markers=("```json",), closing="```", bare=True),
    lazy=True,
    lazy_at=("", ""),
    example='{"name":"get_weather","arguments":{"city":"Paris"}}',
)
PLAIN = Family(name="plain")

FAMILIES: Mapping[str, Family] = MappingProxyType(
    {
        family.name: family
        for family in (
            HARMONY,
            QWEN3_CODER,
            DEEPSEEK,
            MISTRAL_V11,
            MISTRAL,
            QWEN3,
            HERMES,
            LLAMA3,
            FUNCTOOLS,
            TOOL_CALL_PREFIX,
            ACTION_JSON,
            JSON,
            PLAIN,
        )
    }
)
"""Every family, in the order ``family_for`` tries their fingerprints."""


def family_named(name: str) -> Family | None:
    """The family an explicit choice names (a model's ``parser``), if known."""
    return FAMILIES.get(name)


def family_for(
    template: str | None, architecture: str = "", *, parser: str = ""
) -> Family:
    """The family a model belongs to: the one its ``parser`` names (chosen at
    create time), else from its chat template and GGUF architecture.

    A template that names no family but mentions tools gets ``json`` (calls as bare
    JSON, the Llama 3 way); one that does not, ``plain`` (thinking tags only, no
    calls: such a model cannot be offered tools). A ``parser`` this table does not
    know (another server's name) is ignored.
    """
    chosen = FAMILIES.get(parser) if parser else None
    if chosen is not None:
        return chosen
    text = template or ""
    for family in FAMILIES.values():
        if family.recognises(text):
            return family
    for family in FAMILIES.values():
        if architecture and architecture in family.architectures:
            return family
    if "tools" in text or "tool_call" in text:
        return JSON
    return PLAIN
