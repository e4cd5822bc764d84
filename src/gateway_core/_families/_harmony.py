"""gpt-oss's harmony format: an answer is a sequence of messages on channels.

Each message is ``<|start|>`` + a header + ``<|message|>`` + its text + an end tag
(``<|end|>``, or ``<|call|>``/``<|return|>``, which end the turn). The header names
the role, the channel after ``<|channel|>``, and for a tool call a recipient
``to=functions.NAME`` (before or after the channel), with ``<|constrain|>json``::

    <|channel|>analysis<|message|>Need the weather.<|end|>
    <|start|>assistant<|channel|>commentary to=functions.get_weather
    <|constrain|>json<|message|>{"city":"Paris"}<|call|>     (one line)

The prompt ends with ``<|start|>assistant``, so the first header comes without its
start tag. What each message becomes:

- ``analysis``: thinking;
- ``final``, and ``commentary`` without a recipient (a preamble): content;
- a recipient naming an offered tool: a tool call, its text the JSON arguments.

Tool names are what the model was shown: harmony names are TypeScript identifiers,
so a tool named ``get-weather`` is read back from ``functions.get_weather`` too
(``harmony_aliases``, the renaming Ollama applies to the tools it renders).

Nothing is lost: a call to a tool that was not offered, or whose arguments are not a
JSON object, comes back as content, its markup and all; text where a header should
be that cannot be one is content. The call is complete when its JSON is, whether or
not ``<|call|>`` came (the runner stops at it); a call the token limit cut is a call
with the arguments so far.

Phases and inputs (``HARMONY_TRANSITIONS`` is the whole of it)::

    HEADER  --MESSAGE--> BODY      the header was read
    HEADER  --TEXT-----> BODY      it cannot be a header: content until an end tag
    BODY    --END------> BETWEEN
    BETWEEN --START----> HEADER    <|start|>, or a header that starts at once
    BETWEEN --TEXT-----> BODY      stray text: content until an end tag
    (every phase but FINISHED) --FINISH--> FINISHED
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .._errors import LocalProtocolError
from .._json import loads_strict
from .._segments import Content, Segment, Thinking, ToolCall
from .._thinking import partial_tag_length
from .._tool_calls import Found, Toolbox, call_id, json_value_end, salvage_json
from ._parser import ParserSetup

__all__ = [
    "END_TAGS",
    "HARMONY_TRANSITIONS",
    "HarmonyInput",
    "HarmonyParser",
    "HarmonyPhase",
    "harmony_aliases",
    "harmony_forced_opening",
    "harmony_name",
]

START = "<|start|>"
CHANNEL = "<|channel|>"
MESSAGE = "<|message|>"
CONSTRAIN = "<|constrain|>"
END_TAGS = ("<|end|>", "<|call|>", "<|return|>")
FINAL_HEADER = START + "assistant" + CHANNEL + "final" + MESSAGE
_HEADER_TAGS = (CHANNEL, CONSTRAIN)
# A header is a few words and tags; text longer than this, or with other characters,
# is the model writing prose where a header should be.
_HEADER_MAX = 256
_HEADER_TEXT = re.compile(r"[\w.=:\-/ \t]*")
_BUILT_INS = frozenset({"browser.open", "browser.search", "browser.find", "python"})


class HarmonyPhase(enum.Enum):
    HEADER = "header"
    """Reading a message's header, up to ``<|message|>``."""
    BODY = "body"
    """Inside a message, up to its end tag."""
    BETWEEN = "between"
    """After a message: the next one may start."""
    FINISHED = "finished"


class HarmonyInput(enum.Enum):
    START = "start"
    MESSAGE = "message"
    END = "end"
    TEXT = "text"
    FINISH = "finish"


_P, _I = HarmonyPhase, HarmonyInput

HARMONY_TRANSITIONS: Mapping[tuple[HarmonyPhase, HarmonyInput], HarmonyPhase] = (
    MappingProxyType(
        {
            (_P.HEADER, _I.MESSAGE): _P.BODY,
            (_P.HEADER, _I.TEXT): _P.BODY,
            (_P.HEADER, _I.FINISH): _P.FINISHED,
            (_P.BODY, _I.END): _P.BETWEEN,
            (_P.BODY, _I.FINISH): _P.FINISHED,
            (_P.BETWEEN, _I.START): _P.HEADER,
            (_P.BETWEEN, _I.TEXT): _P.BODY,
            (_P.BETWEEN, _I.FINISH): _P.FINISHED,
        }
    )
)


def harmony_name(name: str) -> str:
    """A tool name as a harmony identifier: spaces, dashes and dots become
    underscores, other characters that are not letters, digits, ``_`` or ``$`` go,
    and a leading digit gets an underscore (Ollama's renaming)."""
    if name in _BUILT_INS:
        return name
    chars = []
    for char in name:
        if char in " -.":
            chars.append("_")
        elif char in "_$" or char.isalpha() or char.isdigit():
            chars.append(char)
    candidate = "".join(chars) or "unnamed"
    return "_" + candidate if candidate[0].isdigit() else candidate


def harmony_aliases(names: Iterable[str]) -> dict[str, str]:
    """Each tool's harmony identifier, back to its name; a name two tools would
    share is numbered (``f``, ``f_2``), in the tools' order."""
    aliases: dict[str, str] = {}
    for name in names:
        base = candidate = harmony_name(name)
        count = 2
        while candidate in aliases:
            candidate = f"{base}_{count}"
            count += 1
        aliases[candidate] = name
    return {alias: name for alias, name in aliases.items() if alias != name}


@dataclass(frozen=True, slots=True)
class _Header:
    channel: str
    recipient: str


def _read_header(text: str) -> _Header:
    """Channel and recipient of a header (Ollama's reading: the channel is the
    word after ``<|channel|>``, the recipient the first ``to=`` word)."""
    text = text.replace(CONSTRAIN, " " + CONSTRAIN)
    channel = ""
    at = text.find(CHANNEL)
    if at >= 0:
        words = text[at + len(CHANNEL) :].split(maxsplit=1)
        channel = words[0] if words else ""
    recipient = next(
        (w[3:] for w in text.replace(CHANNEL, " ").split() if w.startswith("to=")), ""
    )
    return _Header(channel, recipient)


def _could_be_header(text: str, *, whole: bool = False) -> bool:
    """``text`` is a header (``whole``: it ended at ``<|message|>``), or may
    still become one: words and header tags, and at the end part of a tag."""
    if len(text) > _HEADER_MAX:
        return False
    for tag in _HEADER_TAGS:
        text = text.replace(tag, " ")
    keep = 0
    if not whole:
        keep = max(partial_tag_length(text, tag) for tag in (*_HEADER_TAGS, MESSAGE))
    return _HEADER_TEXT.fullmatch(text[: len(text) - keep]) is not None


class HarmonyParser:
    """One harmony output to thinking, content and tool calls, incrementally."""

    def __init__(self, setup: ParserSetup) -> None:
        tools = setup.tools or Toolbox()
        self._tools = tools.with_aliases(harmony_aliases(tools.names))
        self._seed = setup.id_seed
        self._calls = 0
        self._held = ""
        self._prefix = ""
        """The header's text the prompt wrote (``assistant``): read, never output."""
        self._raw = ""
        """The current message's markup as the model wrote it, for a message that
        turns out not to be readable and comes back verbatim."""
        self._kind = "content"
        self._name = ""
        self._done_thinking = False
        self._phase = self._start(setup.prompt)

    def _start(self, prompt: str) -> HarmonyPhase:
        at = prompt.rfind(START)
        tail = prompt[at + len(START) :] if at >= 0 else ""
        if any(tag in tail for tag in END_TAGS):
            return HarmonyPhase.BETWEEN
        header, found, _ = tail.partition(MESSAGE)
        if found:
            self._open(_read_header(header))
            return HarmonyPhase.BODY
        self._prefix = header
        return HarmonyPhase.HEADER

    @property
    def phase(self) -> HarmonyPhase:
        return self._phase

    @property
    def done_thinking(self) -> bool:
        return self._done_thinking

    def answer_opening(self) -> str | None:
        if self._phase is HarmonyPhase.BODY and self._kind == "content":
            return ""
        if self._phase is HarmonyPhase.BETWEEN:
            return FINAL_HEADER
        if self._phase is HarmonyPhase.HEADER and (
            (self._prefix + self._held).strip() in ("", "assistant")
        ):
            return CHANNEL + "final" + MESSAGE
        return END_TAGS[0] + FINAL_HEADER

    def feed(self, text: str) -> list[Segment]:
        if self._phase is HarmonyPhase.FINISHED:
            raise LocalProtocolError("harmony parser: feed after finish")
        self._held += text
        out: list[Segment] = []
        while self._step(out):
            pass
        return out

    def finish(self, *, cut: bool = False) -> list[Segment]:
        if self._phase is HarmonyPhase.FINISHED:
            raise LocalProtocolError("harmony parser: finish after finish")
        out: list[Segment] = []
        held, self._held = self._held, ""
        if self._phase is HarmonyPhase.BODY:
            if self._kind == "call":
                self._end_call(out, held, cut=cut)
            else:
                self._emit(out, held)
        elif self._phase is HarmonyPhase.HEADER:
            # A header cut short carries nothing to show, unless it was prose.
            if "<|" not in held and held.strip() not in ("", "assistant"):
                out.append(Content(text=held))
        elif held.strip():
            out.append(Content(text=held.lstrip()))
        self._move(HarmonyInput.FINISH)
        return out

    def _step(self, out: list[Segment]) -> bool:
        match self._phase:
            case HarmonyPhase.HEADER:
                return self._header(out)
            case HarmonyPhase.BODY:
                return self._body(out)
            case HarmonyPhase.BETWEEN:
                return self._between()
        raise LocalProtocolError(f"harmony parser: text in phase {self._phase.value}")

    def _between(self) -> bool:
        trimmed = self._held.lstrip()
        if not trimmed:
            self._held = ""
            return False
        if trimmed.startswith(START):
            self._held = trimmed[len(START) :]
            self._raw = START
            self._move(HarmonyInput.START)
            return True
        if trimmed.startswith(CHANNEL):
            self._held, self._raw = trimmed, ""
            self._move(HarmonyInput.START)  # a header without its start tag
            return True
        if START.startswith(trimmed) or CHANNEL.startswith(trimmed):
            return False
        self._held, self._kind, self._raw = trimmed, "content", ""
        self._done_thinking = True
        self._move(HarmonyInput.TEXT)
        return True

    def _header(self, out: list[Segment]) -> bool:
        held = self._held
        header, found, body = held.partition(MESSAGE)
        if found and _could_be_header(header, whole=True):
            self._raw += header + MESSAGE
            self._held = body
            self._open(_read_header(self._prefix + header))
            self._prefix = ""
            self._move(HarmonyInput.MESSAGE)
            return True
        if not found and _could_be_header(held):
            return False
        # Prose where a header should be: it is the answer's text.
        self._kind, self._prefix, self._raw = "content", "", ""
        self._done_thinking = True
        self._move(HarmonyInput.TEXT)
        return True

    def _open(self, header: _Header) -> None:
        if header.recipient:
            self._kind = "call"
            self._name = header.recipient
        elif header.channel == "analysis":
            self._kind = "thinking"
        else:
            self._kind = "content"
        if self._kind != "thinking":
            self._done_thinking = True

    def _body(self, out: list[Segment]) -> bool:
        held = self._held
        ends = [(held.find(tag), tag) for tag in END_TAGS if tag in held]
        if ends:
            at, tag = min(ends)
            self._held = held[at + len(tag) :]
            if self._kind == "call":
                self._end_call(out, held[:at], cut=False, end=tag)
            else:
                self._emit(out, held[:at])
            if self._kind == "thinking":
                self._done_thinking = True
            self._raw = ""
            self._move(HarmonyInput.END)
            return True
        if self._kind != "call":  # a call is read whole; the rest streams
            keep = max(partial_tag_length(held, tag) for tag in END_TAGS)
            self._emit(out, held[: len(held) - keep])
            self._held = held[len(held) - keep :]
        return False

    def _emit(self, out: list[Segment], text: str) -> None:
        if text:
            kind = Thinking if self._kind == "thinking" else Content
            out.append(kind(text=text))

    def _end_call(
        self, out: list[Segment], body: str, *, cut: bool, end: str = ""
    ) -> None:
        found = self._call(body, cut=cut)
        if found is None:
            text = self._raw + body + end
            if text:
                out.append(Content(text=text))
            return
        index = self._calls
        self._calls += 1
        out.append(
            ToolCall(
                index=index,
                id=call_id(self._seed, index),
                name=found.name,
                arguments=found.arguments,
                partial=found.partial,
            )
        )

    def _call(self, body: str, *, cut: bool) -> Found | None:
        recipient = self._name.removeprefix("functions.")
        name = self._tools.resolve(recipient)
        if name is None:
            return None
        text = body.strip()
        try:
            arguments = loads_strict(text) if text else {}
        except ValueError:
            arguments = None
        if isinstance(arguments, dict):
            return Found(name, arguments)
        if not cut or json_value_end(text) >= 0:
            return None
        value = salvage_json(text)
        return Found(name, value if isinstance(value, dict) else {}, partial=text)

    def _move(self, event: HarmonyInput) -> None:
        target = HARMONY_TRANSITIONS.get((self._phase, event))
        if target is None:
            raise LocalProtocolError(
                f"harmony parser: {event.value} in phase {self._phase.value}"
            )
        self._phase = target


def harmony_forced_opening(opening: str | None) -> str | None:
    """What pass 2 writes before a forced call: a forced call is a commentary
    message, so where an answer would open the final channel, a new message opens
    (after ending the final one, if the model had begun it)."""
    if opening is None:
        return None
    if opening == "":
        return END_TAGS[0] + START + "assistant"
    return opening.removesuffix(CHANNEL + "final" + MESSAGE)


def harmony_parser(setup: ParserSetup) -> HarmonyParser:
    return HarmonyParser(setup)
