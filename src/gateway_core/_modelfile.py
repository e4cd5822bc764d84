"""Modelfiles, as Ollama writes them, read into an ``/api/create`` request.

One instruction per line (instructions are case-insensitive): ``FROM`` (a GGUF
file or a model name), ``PARAMETER name value`` (typed by the option's type;
``stop`` may repeat), ``TEMPLATE``, ``SYSTEM``, ``MESSAGE role content``,
``LICENSE`` (may repeat), ``PARSER family`` (which parser reads the output). A
value is the rest of the line, a ``"quoted"`` string, or a
``\"\"\"triple-quoted\"\"\"`` one that may span lines. ``#`` starts a comment line.
``ADAPTER`` (LoRA adapters) is refused: this gateway does not apply them.
Every problem is a ``ModelfileError`` naming its line.

Reading a Modelfile is pure; turning ``FROM ./model.gguf`` into a blob is the
client's work (it uploads the file, then names its digest in ``files``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ._errors import ClientError
from ._json import JsonValue
from ._options import parameter_from_text

__all__ = ["Modelfile", "ModelfileError", "parse_modelfile"]

_ROLES = frozenset({"system", "user", "assistant", "tool"})
_INSTRUCTIONS = frozenset(
    {
        "from",
        "parameter",
        "template",
        "system",
        "message",
        "license",
        "adapter",
        "parser",
    }
)
_TRIPLE = '"""'


class ModelfileError(ValueError):
    """A Modelfile that cannot be read; the message names the line."""


@dataclass(slots=True)
class Modelfile:
    """What a Modelfile says. ``source`` is FROM's argument as written: a path
    (``./x.gguf``, ``/abs/x.gguf``, ``~/x.gguf``) or a model name."""

    source: str = ""
    parameters: dict[str, JsonValue] = field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    messages: list[dict[str, JsonValue]] = field(default_factory=list)
    licenses: list[str] = field(default_factory=list)
    parser: str | None = None

    @property
    def from_file(self) -> bool:
        """FROM names a file, not a model (Ollama's rule: a path-like argument)."""
        text = self.source
        return text.startswith(("/", "./", "../", "~")) or text.lower().endswith(
            ".gguf"
        )

    def create_request(
        self, model: str, *, files: dict[str, str] | None = None
    ) -> dict[str, JsonValue]:
        """The ``/api/create`` body: ``files`` (name → digest) for a FROM file,
        else ``from`` the named model."""
        body: dict[str, JsonValue] = {"model": model}
        if files:
            body["files"] = dict(files)
        else:
            body["from"] = self.source
        if self.parameters:
            body["parameters"] = dict(self.parameters)
        if self.template is not None:
            body["template"] = self.template
        if self.system is not None:
            body["system"] = self.system
        if self.messages:
            body["messages"] = list[JsonValue](self.messages)
        if self.licenses:
            body["license"] = list[JsonValue](self.licenses)
        if self.parser is not None:
            body["parser"] = self.parser
        return body


def parse_modelfile(text: str) -> Modelfile:
    """Read ``text``; ModelfileError for any line that is not what Ollama reads."""
    found = Modelfile()
    for number, name, value in _instructions(text):
        where = f"line {number}"
        match name:
            case "from":
                if found.source:
                    raise ModelfileError(f"{where}: FROM may appear only once")
                found.source = value
            case "parameter":
                _parameter(found, where, value)
            case "template":
                found.template = value
            case "system":
                found.system = value
            case "message":
                role, _, content = value.partition(" ")
                role = role.lower()
                if role not in _ROLES:
                    raise ModelfileError(
                        f"{where}: MESSAGE role must be system, user, assistant or "
                        f"tool, not {role!r}"
                    )
                found.messages.append({"role": role, "content": _unquoted(content)})
            case "license":
                found.licenses.append(value)
            case "parser":
                found.parser = value
            case "adapter":
                raise ModelfileError(
                    f"{where}: ADAPTER is not supported: this gateway does not apply "
                    "LoRA adapters (merge the adapter into the GGUF file instead)"
                )
    if not found.source:
        raise ModelfileError("no FROM line: say which model or GGUF file to start from")
    return found


def _parameter(found: Modelfile, where: str, value: str) -> None:
    key, _, raw = value.partition(" ")
    # Only the spaces after the name go: a triple-quoted value may be whitespace.
    raw = _unquoted(raw.lstrip(" "))
    if not key or not raw:
        raise ModelfileError(f"{where}: PARAMETER needs a name and a value")
    try:
        typed = parameter_from_text(key.lower(), raw)
    except ClientError as exc:
        raise ModelfileError(f"{where}: {exc.message}") from None
    key = key.lower()
    if key == "stop":
        stops = found.parameters.setdefault("stop", [])
        assert isinstance(stops, list)
        stops.append(typed)
    else:
        found.parameters[key] = typed


def _unquoted(text: str) -> str:
    if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
        return text[1:-1]
    return text


def _instructions(text: str) -> Iterator[tuple[int, str, str]]:
    """(line number, instruction, value) for each instruction."""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        number, line = index + 1, lines[index].strip()
        index += 1
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        name = word.lower()
        if name not in _INSTRUCTIONS:
            raise ModelfileError(f"line {number}: unknown instruction {word!r}")
        rest = rest.strip()
        if rest.startswith(_TRIPLE) or _triple_after_word(name, rest):
            head, _, opened = rest.partition(_TRIPLE)
            body = [opened]
            while _TRIPLE not in body[-1]:
                if index >= len(lines):
                    raise ModelfileError(f'line {number}: """ is never closed')
                body.append(lines[index])
                index += 1
            joined = "\n".join(body)
            value, _, after = joined.partition(_TRIPLE)
            if after.strip():
                raise ModelfileError(f'line {number}: text after the closing """')
            yield number, name, f"{head}{value}" if head else value
            continue
        if not rest:
            raise ModelfileError(f"line {number}: {word.upper()} needs a value")
        yield number, name, _unquoted(rest) if name != "message" else rest


def _triple_after_word(name: str, rest: str) -> bool:
    """``PARAMETER stop \"\"\"...`` and ``MESSAGE user \"\"\"...``: the triple quote
    comes after the first word of the value."""
    if name not in ("parameter", "message"):
        return False
    _, _, value = rest.partition(" ")
    return value.strip().startswith(_TRIPLE)
