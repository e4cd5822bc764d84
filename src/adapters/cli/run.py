"""``gateway-core run MODEL [PROMPT]``: chat with a model, as ``ollama run`` does.

With a prompt argument, or with input piped in, it answers once and exits. On a
terminal it is a conversation: ``>>>`` prompts, answers streamed as they come,
``\"\"\"`` opens and closes a multi-line message, ``/set parameter NAME VALUE``
sets an option for the rest of the session, ``/show info`` shows the model,
``/bye`` (or Ctrl-D) ends it. Thinking is shown apart from the answer: dimmed on a
terminal, on stderr when the answer is piped, so that stdout holds only the answer.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from gateway_core import ClientError, parameter_from_text

from .client import ApiError, Client
from .verbs import VERBS

__all__ = ["add_run_command", "run"]

_HELP = """Available commands:
  /set parameter NAME VALUE   set an option (temperature, num_ctx, ...)
  /show info                  show the model's information
  /bye                        exit
  /?                          this help
Use \"\"\" to begin and end a multi-line message."""
_DIM, _RESET = "\x1b[2m", "\x1b[0m"


def add_run_command(commands: argparse._SubParsersAction[Any]) -> None:
    run_parser = commands.add_parser("run", help="chat with a model")
    run_parser.add_argument("model")
    run_parser.add_argument("prompt", nargs="*", help="answer this once, then exit")
    run_parser.add_argument(
        "--think", choices=("true", "false"), help="ask a thinking model to think"
    )
    run_parser.set_defaults(verb="run")


def run(client: Client, args: argparse.Namespace) -> int:
    session = _Session(client, args.model, args.think)
    if args.prompt:
        session.ask(" ".join(args.prompt))
        return 0
    if not sys.stdin.isatty():
        text = sys.stdin.read()
        if text.strip():
            session.ask(text)
        return 0
    client.call("POST", "/api/chat", {"model": args.model, "messages": []})
    return _converse(session, show=lambda: _info(client, args.model))


class _Session:
    def __init__(self, client: Client, model: str, think: str | None) -> None:
        self.client = client
        self.model = model
        self.think = None if think is None else think == "true"
        self.options: dict[str, Any] = {}
        self.messages: list[dict[str, Any]] = []

    def ask(self, text: str) -> None:
        """Send ``text``, stream the answer, keep both for the next turn."""
        self.messages.append({"role": "user", "content": text})
        body: dict[str, Any] = {
            "model": self.model,
            "messages": self.messages,
            "options": self.options,
            "stream": True,
        }
        if self.think is not None:
            body["think"] = self.think
        answer: list[str] = []
        thinking = False
        terminal = sys.stdout.isatty()
        for line in self.client.stream("/api/chat", body):
            message = line.get("message") or {}
            thought = message.get("thinking") or ""
            if thought:
                if terminal:
                    if not thinking:
                        sys.stdout.write(_DIM + "Thinking...\n")
                    sys.stdout.write(thought)
                else:
                    sys.stderr.write(thought)
                thinking = True
            content = message.get("content") or ""
            if content:
                if thinking and terminal:
                    sys.stdout.write("\n...done thinking." + _RESET + "\n\n")
                thinking = False
                answer.append(content)
                sys.stdout.write(content)
            sys.stdout.flush()
        if thinking and terminal:
            sys.stdout.write(_RESET)
        sys.stdout.write("\n")
        sys.stdout.flush()
        self.messages.append({"role": "assistant", "content": "".join(answer)})


def _converse(session: _Session, *, show: Callable[[], None]) -> int:
    while True:
        try:
            text = _read_message()
        except EOFError:
            print()
            return 0
        command = text.strip()
        if not command:
            continue
        if command in ("/bye", "/exit"):
            return 0
        if command in ("/?", "/help"):
            print(_HELP)
        elif command.startswith("/set parameter"):
            _set(session, command.split()[2:])
        elif command == "/show info":
            show()
        elif command.startswith("/"):
            print(f"Unknown command '{command.split()[0]}'. Type /? for help")
        else:
            try:
                session.ask(text)
            except ApiError as exc:
                print(f"Error: {exc.message}", file=sys.stderr)


def _read_message() -> str:
    """One message: a line, or the lines between two \"\"\" markers."""
    line = input(">>> ")
    if not line.lstrip().startswith('"""'):
        return line
    lines = [line.lstrip()[3:]]
    while '"""' not in lines[-1]:
        lines.append(input("... "))
    lines[-1] = lines[-1].split('"""', 1)[0]
    return "\n".join(lines).strip("\n")


def _set(session: _Session, words: list[str]) -> None:
    if len(words) < 2:
        print("Usage: /set parameter NAME VALUE")
        return
    name, value = words[0], " ".join(words[1:])
    try:
        typed = parameter_from_text(name, value)
    except ClientError as exc:
        print(f"Couldn't set parameter: {exc.message}")
        return
    if name == "stop":
        session.options.setdefault("stop", []).append(typed)
    else:
        session.options[name] = typed
    print(f"Set parameter '{name}' to '{value}'")


def _info(client: Client, model: str) -> None:
    VERBS["show"](client, argparse.Namespace(model=model, **dict.fromkeys(
        ("modelfile", "parameters", "template", "system", "license"), False
    )))  # fmt: skip
