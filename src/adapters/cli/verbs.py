"""The model verbs of the CLI, each a thin HTTP call to a running server:
``list``/``ls``, ``ps``, ``show``, ``rm``, ``cp``, ``stop``, ``pull``, ``push`` and
``create NAME -f Modelfile``. Tables are Ollama's columns; pull, push and create
show progress bars (rich) on the terminal, plain status lines elsewhere."""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TransferSpeedColumn,
)

from gateway_core import ModelfileError, parse_modelfile

from .client import ApiError, Client

__all__ = ["VERBS", "add_client_commands"]

Verb = Callable[[Client, argparse.Namespace], int]
_CHUNK = 1 << 20


def add_client_commands(commands: argparse._SubParsersAction[Any]) -> None:
    """The verbs that talk to a running server (GATEWAY_HOST, then OLLAMA_HOST)."""
    listing = commands.add_parser("list", aliases=["ls"], help="list the models")
    listing.set_defaults(verb="list")
    commands.add_parser("ps", help="list the loaded models").set_defaults(verb="ps")
    show = commands.add_parser("show", help="show a model's information")
    show.add_argument("model")
    for flag in ("modelfile", "parameters", "template", "system", "license"):
        show.add_argument(f"--{flag}", action="store_true", help=f"show its {flag}")
    show.set_defaults(verb="show")
    rm = commands.add_parser("rm", help="remove models")
    rm.add_argument("models", nargs="+", metavar="model")
    rm.set_defaults(verb="rm")
    cp = commands.add_parser("cp", help="copy a model")
    cp.add_argument("source")
    cp.add_argument("destination")
    cp.set_defaults(verb="cp")
    stop = commands.add_parser("stop", help="unload a running model")
    stop.add_argument("model")
    stop.set_defaults(verb="stop")
    for verb in ("pull", "push"):
        moving = commands.add_parser(verb, help=f"{verb} a model from/to a registry")
        moving.add_argument("model")
        moving.add_argument(
            "--insecure", action="store_true", help="use plain HTTP to the registry"
        )
        moving.set_defaults(verb=verb)
    create = commands.add_parser("create", help="create a model from a Modelfile")
    create.add_argument("model")
    create.add_argument(
        "-f", "--file", default="Modelfile", help="the Modelfile (default: ./Modelfile)"
    )
    create.set_defaults(verb="create")


def _list(client: Client, args: argparse.Namespace) -> int:
    models = client.call("GET", "/api/tags")["models"]
    rows = [
        [m["name"], m["digest"][:12], _size(m["size"]), _ago(m["modified_at"])]
        for m in models
    ]
    _table(["NAME", "ID", "SIZE", "MODIFIED"], rows)
    return 0


def _ps(client: Client, args: argparse.Namespace) -> int:
    models = client.call("GET", "/api/ps")["models"]
    rows = [
        [
            m["name"],
            m["digest"][:12],
            _size(m.get("size", 0)),
            "100% GPU" if m.get("size_vram") else "100% CPU",
            str(m.get("context_length", "")),
            m.get("expires_at", ""),
        ]
        for m in models
    ]
    _table(["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"], rows)
    return 0


def _show(client: Client, args: argparse.Namespace) -> int:
    shown = client.call("POST", "/api/show", {"model": args.model})
    for flag in ("modelfile", "parameters", "template", "system", "license"):
        if getattr(args, flag):
            print(shown.get(flag) or "")
            return 0
    info = shown.get("model_info") or {}
    details = shown.get("details") or {}
    arch = info.get("general.architecture", details.get("family", ""))
    lines = [
        ("architecture", arch),
        ("parameters", details.get("parameter_size", "")),
        ("context length", shown.get("context_length", "")),
        ("quantization", details.get("quantization_level", "")),
    ]
    print("  Model")
    for name, value in lines:
        if value not in ("", None):
            print(f"    {name:<20}{value}")
    capabilities = shown.get("capabilities") or []
    if capabilities:
        print("\n  Capabilities")
        for capability in capabilities:
            print(f"    {capability}")
    return 0


def _rm(client: Client, args: argparse.Namespace) -> int:
    for model in args.models:
        client.call("DELETE", "/api/delete", {"model": model})
        print(f"deleted '{model}'")
    return 0


def _cp(client: Client, args: argparse.Namespace) -> int:
    client.call(
        "POST", "/api/copy", {"source": args.source, "destination": args.destination}
    )
    print(f"copied '{args.source}' to '{args.destination}'")
    return 0


def _stop(client: Client, args: argparse.Namespace) -> int:
    client.call(
        "POST",
        "/api/generate",
        {"model": args.model, "keep_alive": 0, "stream": False},
    )
    return 0


def _move(client: Client, args: argparse.Namespace) -> int:
    body = {"model": args.model, "insecure": args.insecure, "stream": True}
    _progress(client.stream(f"/api/{args.verb}", body))
    return 0


def _create(client: Client, args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ApiError(f"cannot read {path}: {exc.strerror}") from None
    try:
        modelfile = parse_modelfile(text)
    except ModelfileError as exc:
        raise ApiError(f"{path}: {exc}") from None
    files = None
    if modelfile.from_file:
        gguf = (path.parent / Path(modelfile.source).expanduser()).resolve()
        files = {gguf.name: _upload(client, gguf)}
    body = modelfile.create_request(args.model, files=files)
    body["stream"] = True
    _progress(client.stream("/api/create", body))
    return 0


def _upload(client: Client, gguf: Path) -> str:
    """The file's digest, after uploading it as a blob unless the server has it."""
    try:
        size = gguf.stat().st_size
        digest = _sha256(gguf, size)
    except OSError as exc:
        raise ApiError(f"cannot read {gguf}: {exc.strerror}") from None
    if client.exists(f"/api/blobs/{digest}"):
        return digest
    with _bars() as progress:
        task = progress.add_task(f"copying {gguf.name}", total=size)

        def chunks() -> Iterator[bytes]:
            with gguf.open("rb") as file:
                while chunk := file.read(_CHUNK):
                    progress.advance(task, len(chunk))
                    yield chunk

        client.upload(f"/api/blobs/{digest}", chunks(), size)
    return digest


def _sha256(path: Path, size: int) -> str:
    hasher = hashlib.sha256()
    with _bars() as progress, path.open("rb") as file:
        task = progress.add_task("hashing", total=size)
        while chunk := file.read(_CHUNK):
            hasher.update(chunk)
            progress.advance(task, len(chunk))
    return "sha256:" + hasher.hexdigest()


def _bars() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=Console(file=sys.stderr),
        transient=True,
    )


def _progress(lines: Iterator[dict[str, Any]]) -> None:
    """Ollama's progress lines: a bar per digest, other statuses printed once."""
    console = Console(file=sys.stderr)
    tasks: dict[str, TaskID] = {}
    shown = ""
    with _bars() as progress:
        for line in lines:
            status = str(line.get("status", ""))
            digest = line.get("digest")
            if digest and line.get("total"):
                task = tasks.get(digest)
                if task is None:
                    task = tasks[digest] = progress.add_task(
                        status, total=int(line["total"])
                    )
                progress.update(task, completed=int(line.get("completed") or 0))
            elif status != shown:
                if not console.is_terminal:
                    print(status, file=sys.stderr)
                else:
                    progress.console.print(status)
            shown = status
    if shown == "success":
        print("success")


def _table(header: list[str], rows: list[list[str]]) -> None:
    widths = [
        max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))
    ]
    for row in [header, *rows]:
        cells = [
            str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
        ]
        print("    ".join(cells).rstrip())


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _ago(stamp: str) -> str:
    """An RFC 3339 time as Ollama's ``2 minutes ago``."""
    try:
        then = datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return stamp
    seconds = max(0, time.time() - then)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count > 1 else ''} ago"
    return "Less than a minute ago"


VERBS: dict[str, Verb] = {
    "list": _list,
    "ps": _ps,
    "show": _show,
    "rm": _rm,
    "cp": _cp,
    "stop": _stop,
    "pull": _move,
    "push": _move,
    "create": _create,
}
