"""The message list a chat template is rendered with, as Ollama assembles it.

Both ``/api/chat`` and ``/api/generate`` end in the same place: a list of messages
handed to the model's chat template. What the Modelfile contributes (its SYSTEM and
MESSAGE lines), and which of them a request overrides, follows Ollama exactly, since
clients depend on it: a request's first system message replaces the Modelfile's, a
system message later in the conversation does not.

When the rendered prompt is longer than the context window, the oldest turns go first,
but system messages and the newest message stay: the former carry the instructions,
the latter is what the client is asking now.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TypeVar

from ._errors import ClientError
from ._json import JsonValue

__all__ = ["chat_messages", "generate_messages", "truncated_histories"]

Message = TypeVar("Message", bound=Mapping[str, JsonValue])


def chat_messages(
    messages: Sequence[JsonValue | Mapping[str, JsonValue]],
    *,
    system: str | None,
    modelfile_messages: Sequence[Mapping[str, JsonValue]],
) -> list[dict[str, JsonValue]]:
    """The conversation for ``/api/chat``: Modelfile messages, then the request's.

    ``system`` is the Modelfile SYSTEM. It goes first unless the request's own first
    message is a system message (then the client's instructions replace it). Roles
    are lower-cased, so ``"USER"`` works as it does with Ollama.

    Raises:
        ClientError: (400) a request message is not an object or has no string role.
    """
    request = [_message(value, index) for index, value in enumerate(messages)]
    merged = [_lower_role(message) for message in modelfile_messages] + request
    if system and not (request and request[0]["role"] == "system"):
        merged.insert(0, {"role": "system", "content": system})
    return merged


def generate_messages(
    prompt: str,
    *,
    system: str | None,
    modelfile_system: str | None,
    modelfile_messages: Sequence[Mapping[str, JsonValue]],
    has_context: bool,
    images: Sequence[str] = (),
) -> list[dict[str, JsonValue]]:
    """The one-turn chat ``/api/generate`` renders when the model has a chat template.

    The request's ``system`` wins over the Modelfile's; an empty one counts as none.
    Modelfile messages are left out when the request carries a ``context``: that
    conversation already began, with them in it.
    """
    messages: list[dict[str, JsonValue]] = []
    chosen_system = system or modelfile_system
    if chosen_system:
        messages.append({"role": "system", "content": chosen_system})
    if not has_context:
        messages.extend(_lower_role(message) for message in modelfile_messages)
    user: dict[str, JsonValue] = {"role": "user", "content": prompt}
    if images:
        user["images"] = list(images)
    messages.append(user)
    return messages


def truncated_histories(messages: Sequence[Message]) -> Iterator[list[Message]]:
    """Ever shorter versions of a conversation, for fitting it into a context window.

    The full list comes first, since it usually fits and then one render is enough.
    Each later list drops the oldest remaining non-system message, until only the
    system messages and the last message are left. Every list is different from
    the one before; the caller renders each and takes the first that fits.
    """
    if not messages:
        yield []
        return
    last = len(messages) - 1
    for start in range(last + 1):
        if start > 0 and messages[start - 1].get("role") == "system":
            continue
        kept = [m for m in messages[:start] if m.get("role") == "system"]
        yield kept + list(messages[start:])


def _message(
    value: JsonValue | Mapping[str, JsonValue], index: int
) -> dict[str, JsonValue]:
    if not isinstance(value, Mapping):
        raise ClientError(400, f"messages[{index}] must be an object", param="messages")
    role = value.get("role")
    if not isinstance(role, str):
        raise ClientError(
            400, f"messages[{index}].role must be a string", param="messages"
        )
    return {**value, "role": role.lower()}


def _lower_role(message: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
    role = message.get("role")
    return {**message, "role": role.lower() if isinstance(role, str) else role}
