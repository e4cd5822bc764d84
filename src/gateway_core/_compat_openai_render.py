"""OpenAI's answers: chat completion chunks and bodies, legacy text completions.

Both are ``Renderer`` s (``_passes.py``): the generation flow hands them thinking,
content and tool calls, and they write OpenAI's wire format (ollama-api.md §2.3).
Where Ollama's writer falls short of OpenAI's streams, these follow OpenAI: thinking
also goes in ``reasoning_content`` (the name most OpenAI-style clients read), the
usage chunk comes with ``usage: null`` on every other chunk, and the legacy stream
ends with a finish chunk that carries no fake zero usage.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._framing import SSE_DONE, encode_sse
from ._json import JsonValue, dumps
from ._logprobs import TokenLogprob, openai_logprobs
from ._passes import Ending, Metrics
from ._segments import ToolCall

__all__ = ["ChatRenderer", "TextRenderer", "finish_reason", "usage"]


def usage(ending: Ending) -> dict[str, JsonValue]:
    """OpenAI's usage: the whole prompt, of which ``cached_tokens`` came from the
    runner's cache (a chat's earlier turns), and the answer."""
    metrics = ending.metrics
    prompt = metrics.prompt_count + metrics.prompt_cached
    completion = metrics.eval_count
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": metrics.prompt_cached},
    }


def finish_reason(reason: str, *, called: bool) -> str:
    """``stop`` with tool calls is ``tool_calls``; ``length`` stays ``length`` (the
    calls may be cut short, and the client should know: a call the limit cut comes
    with its arguments as far as they got, as OpenAI sends it)."""
    return "tool_calls" if called and reason == "stop" else reason


def _event(body: JsonValue) -> bytes:
    return encode_sse(dumps(body).decode("utf-8"))


def _tool_call(call: ToolCall) -> dict[str, JsonValue]:
    return {
        "index": call.index,
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments_text()},
    }


class _Chunks:
    """The envelope every chunk of one stream shares: id, creation time, model."""

    def __init__(
        self, *, kind: str, response_id: str, created: int, model: str, usage: bool
    ) -> None:
        self._head: dict[str, JsonValue] = {
            "id": response_id,
            "object": kind,
            "created": created,
            "model": model,
        }
        self._usage = usage

    def chunk(self, choice: dict[str, JsonValue]) -> bytes:
        body: dict[str, JsonValue] = {**self._head, "choices": [choice]}
        if self._usage:
            # OpenAI's rule when usage is asked for: every chunk has the key, and
            # only the last one has a value.
            body["usage"] = None
        return _event(body)

    def ending(self, ending: Ending) -> bytes:
        if not self._usage:
            return SSE_DONE
        return _event({**self._head, "choices": [], "usage": usage(ending)}) + SSE_DONE

    def whole(
        self, kind: str, choice: dict[str, JsonValue], ending: Ending
    ) -> JsonValue:
        return {
            **self._head,
            "object": kind,
            "choices": [choice],
            "usage": usage(ending),
        }


class ChatRenderer:
    """``/v1/chat/completions``: ``chat.completion.chunk`` events, or one
    ``chat.completion``.

    The stream opens with a chunk that carries only the role; thinking comes in its
    own chunks (``reasoning`` and ``reasoning_content``), content and tool calls in
    theirs, each call whole with its id and index and its arguments as a JSON text;
    a chunk with an empty delta carries ``finish_reason``; then usage if asked, and
    ``[DONE]``.
    """

    def __init__(
        self,
        *,
        response_id: str,
        created: int,
        model: str,
        include_usage: bool,
        logprobs: bool = False,
    ) -> None:
        self._chunks = _Chunks(
            kind="chat.completion.chunk",
            response_id=response_id,
            created=created,
            model=model,
            usage=include_usage,
        )
        self._called = False
        self._logprobs = logprobs
        """The request asked for logprobs: every choice carries the object."""

    def _shown(self, logprobs: Sequence[TokenLogprob]) -> JsonValue:
        return openai_logprobs(logprobs) if self._logprobs else None

    def _delta(
        self,
        delta: dict[str, JsonValue],
        finish: str | None = None,
        logprobs: Sequence[TokenLogprob] = (),
    ) -> bytes:
        return self._chunks.chunk(
            {
                "index": 0,
                "delta": delta,
                "logprobs": self._shown(logprobs) if logprobs else None,
                "finish_reason": finish,
            }
        )

    def opening(self, metrics: Metrics) -> bytes:
        return self._delta({"role": "assistant", "content": ""})

    def delta(
        self,
        *,
        thinking: str,
        content: str,
        calls: Sequence[ToolCall],
        logprobs: Sequence[TokenLogprob] = (),
    ) -> bytes:
        frames = b""
        if thinking:
            # The step's logprobs go with its first chunk (Ollama's split rule).
            frames += self._delta(
                {"reasoning": thinking, "reasoning_content": thinking},
                logprobs=logprobs,
            )
            logprobs = ()
        delta: dict[str, JsonValue] = {}
        if content:
            delta["content"] = content
        if calls:
            self._called = True
            delta["tool_calls"] = [_tool_call(call) for call in calls]
        if delta:
            frames += self._delta(delta, logprobs=logprobs)
        return frames

    def closing(self, ending: Ending) -> bytes:
        reason = finish_reason(ending.reason, called=self._called)
        rest = ending.gathered.logprobs  # of tokens whose text was never shown
        return self._delta({}, reason, rest) + self._chunks.ending(ending)

    def whole(self, ending: Ending) -> JsonValue:
        got = ending.gathered
        message: dict[str, JsonValue] = {
            "role": "assistant",
            "content": "".join(got.content),
        }
        thinking = "".join(got.thinking)
        if thinking:
            message["reasoning"] = message["reasoning_content"] = thinking
        if got.calls:
            message["tool_calls"] = [_tool_call(call) for call in got.calls]
        choice: dict[str, JsonValue] = {
            "index": 0,
            "message": message,
            "logprobs": self._shown(got.logprobs),
            "finish_reason": finish_reason(ending.reason, called=bool(got.calls)),
        }
        return self._chunks.whole("chat.completion", choice, ending)


class TextRenderer:
    """``/v1/completions``: ``text_completion`` events, or one body. Thinking has no
    place in this API and is left out; ``echo`` puts the prompt first."""

    def __init__(
        self,
        *,
        response_id: str,
        created: int,
        model: str,
        include_usage: bool,
        echo: str | None = None,
    ) -> None:
        self._chunks = _Chunks(
            kind="text_completion",
            response_id=response_id,
            created=created,
            model=model,
            usage=include_usage,
        )
        self._echo = echo

    def _text(self, text: str, finish: str | None = None) -> bytes:
        return self._chunks.chunk(
            {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
        )

    def opening(self, metrics: Metrics) -> bytes:
        return self._text(self._echo) if self._echo else b""

    def delta(
        self,
        *,
        thinking: str,
        content: str,
        calls: Sequence[ToolCall],
        logprobs: Sequence[TokenLogprob] = (),
    ) -> bytes:
        return self._text(content) if content else b""

    def closing(self, ending: Ending) -> bytes:
        return self._text("", ending.reason) + self._chunks.ending(ending)

    def whole(self, ending: Ending) -> JsonValue:
        choice: dict[str, JsonValue] = {
            "text": (self._echo or "") + "".join(ending.gathered.content),
            "index": 0,
            "logprobs": None,
            "finish_reason": ending.reason,
        }
        return self._chunks.whole("text_completion", choice, ending)
