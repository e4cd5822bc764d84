"""Model management: tags, ps, show, create, copy, delete and blobs, as flows.

Each flow checks the request (names, digests, parameter types) before it asks the
store for anything, so a bad request costs no disk access; then it yields one store
effect and shapes the answer. Messages and statuses follow ollama-api.md §8.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import TypeVar

from ._catalog import running_entry, show_body, tags_entry
from ._families import FAMILIES
from ._flow import Flow, FlowError, Step, StreamItem, StreamOpen, expect, perform
from ._json import JsonValue
from ._models import ModelRecord
from ._names import InvalidDigest, InvalidModelName, ModelName, parse_digest
from ._options import effective_num_ctx, resolve_options, validate_parameters
from ._replies import EmptyReply, JsonReply, TextReply
from ._request import Request
from ._templates import ChatTemplate, TemplateError
from ._upstream._router import UpstreamState
from ._upstream._table import UpstreamConfigError, normalize_remote_host
from ._work import (
    BlobPresence,
    BlobStored,
    CheckBlob,
    CollectMetrics,
    CopyModel,
    CreateModel,
    DeleteModel,
    ListModels,
    ListRunning,
    LookupModel,
    MetricsText,
    ModelCreated,
    ModelFound,
    ModelList,
    ReceiveBlob,
    Result,
    RunningList,
    StoreDone,
    WorkEffect,
    WorkFailed,
)

_R = TypeVar("_R")

__all__ = [
    "blob_exists",
    "blob_upload",
    "copy_model",
    "create_model",
    "delete_model",
    "list_models",
    "list_running",
    "lookup",
    "metrics",
    "show_model",
]


def body_of(request: Request) -> Mapping[str, JsonValue]:
    assert request.body is not None  # JSON routes always have one
    return request.body


def text_field(body: Mapping[str, JsonValue], name: str) -> str | None:
    """A string field (the shape check has already refused other types)."""
    value = body.get(name)
    return value if isinstance(value, str) else None


def requested_name(body: Mapping[str, JsonValue]) -> str:
    """The model a request names: ``model``, or the deprecated ``name``."""
    return text_field(body, "model") or text_field(body, "name") or ""


def parse_name(text: str, *, invalid: str) -> ModelName:
    try:
        return ModelName.parse(text)
    except InvalidModelName:
        raise FlowError(400, invalid) from None


def perform_on_model(
    effect: WorkEffect, expected: type[_R], *, not_found: str
) -> Generator[Step, Result | None, _R]:
    """``perform``, with a missing model reported in Ollama's words for this
    endpoint (they differ: ``model 'x' not found``, ``model "x" not found``)."""
    result = yield effect
    if isinstance(result, WorkFailed) and result.status == 404:
        raise FlowError(404, not_found)
    return expect(result, expected)


def lookup(
    name: ModelName, as_given: str, *, verbose: bool = False
) -> Generator[Step, Result | None, ModelRecord]:
    """The installed model called ``name``; 404 in Ollama's words if there is none."""
    found = yield from perform_on_model(
        LookupModel(name=name, verbose=verbose),
        ModelFound,
        not_found=f"model '{as_given}' not found",
    )
    return found.record


def list_models(request: Request) -> Flow:
    found = yield from perform(ListModels(), ModelList)
    records = sorted(found.records, key=lambda r: r.modified_at, reverse=True)
    yield JsonReply(value={"models": [tags_entry(record) for record in records]})


def list_running(request: Request) -> Flow:
    found = yield from perform(ListRunning(), RunningList)
    # Ollama's order: the model that stays longest first.
    models = sorted(found.models, key=lambda m: m.expires_at, reverse=True)
    body: dict[str, JsonValue] = {"models": [running_entry(m) for m in models]}
    if found.upstreams:
        # Not Ollama's: the upstreams this gateway routes to (docs/scaling.md).
        body["upstreams"] = [upstream_entry(state) for state in found.upstreams]
    yield JsonReply(value=body)


def upstream_entry(state: UpstreamState) -> dict[str, JsonValue]:
    """One upstream as ``/api/ps`` shows it."""
    return {
        "pool": state.pool,
        "name": state.upstream.name,
        "kind": state.upstream.kind.value,
        "url": state.upstream.url,
        "up": state.up,
        "circuit": state.circuit,
        "in_flight": state.in_flight,
        "requests": state.requests,
        "failovers": state.failovers,
    }


def metrics(request: Request) -> Flow:
    found = yield from perform(CollectMetrics(), MetricsText)
    yield TextReply(text=found.text, media_type=found.media_type)


def show_model(request: Request) -> Flow:
    body = body_of(request)
    as_given = requested_name(body)
    if not as_given:
        raise FlowError(400, "model is required")
    name = parse_name(as_given, invalid="invalid model name")
    verbose = body.get("verbose") is True
    record = yield from lookup(name, as_given, verbose=verbose)
    parameters = dict(record.parameters)
    options = body.get("options")
    if isinstance(options, dict):
        # show previews a request's options over the model's own parameters, with
        # the same rules as a generation: wrong types are a 400, unknown keys ignored.
        ignored = set(resolve_options(options).ignored)
        parameters.update(
            (key, value)
            for key, value in options.items()
            if key not in ignored and value is not None
        )
    system = text_field(body, "system")
    shown = show_body(
        record,
        system=record.system if system is None else system,
        parameters=parameters,
    )
    # Not Ollama's: the context a request that sets no num_ctx gets, after the
    # server's default (from the hardware), the model's parameters and its
    # training context have had their say.
    shown["context_length"] = effective_num_ctx(
        resolve_options(parameters).load,
        default=request.config.default_context_length,
        train=record.context_length,
    )
    yield JsonReply(value=shown)


def copy_model(request: Request) -> Flow:
    body = body_of(request)
    source_text = text_field(body, "source") or ""
    destination_text = text_field(body, "destination") or ""
    source = parse_name(source_text, invalid=f'source "{source_text}" is invalid')
    destination = parse_name(
        destination_text, invalid=f'destination "{destination_text}" is invalid'
    )
    _refuse_case_variant(
        f'destination "{destination_text}"',
        destination,
        f'source "{source_text}"',
        source,
    )
    yield from perform_on_model(
        CopyModel(source=source, destination=destination),
        StoreDone,
        not_found=f'model "{source_text}" not found',
    )
    yield EmptyReply()


def delete_model(request: Request) -> Flow:
    body = body_of(request)
    as_given = requested_name(body)
    name = parse_name(as_given, invalid=f'name "{as_given}" is invalid')
    yield from perform_on_model(
        DeleteModel(name=name),
        StoreDone,
        not_found=f"model '{as_given}' not found",
    )
    yield EmptyReply()


def create_model(request: Request) -> Flow:
    body = body_of(request)
    effect = _create_effect(body)
    created = yield from perform(effect, ModelCreated)
    if body.get("stream") is False:
        # Ollama answers a non-streaming create with its last progress object.
        yield JsonReply(value={"status": "success"})
        return
    yield StreamOpen()
    for status in created.statuses:
        yield StreamItem.ndjson({"status": status})
    yield StreamItem.ndjson({"status": "success"})


def _create_effect(body: Mapping[str, JsonValue]) -> CreateModel:
    """Check a create request in full, before the store is touched."""
    as_given = requested_name(body)
    if not as_given:
        raise FlowError(400, "model is required")
    name = parse_name(as_given, invalid="invalid model name")
    for unsupported in ("quantize", "adapters"):
        if body.get(unsupported):
            raise FlowError(
                400, f"'{unsupported}' is not supported: create from a ready GGUF file"
            )
    files = _files(body.get("files"))
    base_text = text_field(body, "from")
    remote_host = text_field(body, "remote_host")
    if remote_host:
        return _remote_create_effect(body, name, files, base_text, remote_host)
    base = (
        parse_name(base_text, invalid=f'from "{base_text}" is invalid')
        if (base_text)
        else None
    )
    if bool(files) == (base is not None):
        raise FlowError(400, "give either 'files' (GGUF blob digests) or 'from'")
    if base is not None:
        _refuse_case_variant(f'model "{as_given}"', name, f'from "{base_text}"', base)
    template = text_field(body, "template")
    if template is not None:
        try:
            ChatTemplate.compile(template)
        except TemplateError as exc:
            raise FlowError(400, f"invalid template: {exc}") from None
    parameters = body.get("parameters")
    parser = _parser(body)
    return CreateModel(
        name=name,
        files=files,
        base=base,
        template=template,
        system=text_field(body, "system"),
        parameters=(
            validate_parameters(parameters) if isinstance(parameters, dict) else None
        ),
        messages=_messages(body.get("messages")),
        license=_license(body.get("license")),
        parser=parser,
    )


def _remote_create_effect(
    body: Mapping[str, JsonValue],
    name: ModelName,
    files: tuple[tuple[str, str], ...],
    remote_model: str | None,
    remote_host: str,
) -> CreateModel:
    """A remote model (Ollama's ``remote_host``): ``from`` names it on its host;
    it has no file, only its texts and parameters."""
    if files:
        raise FlowError(400, "a remote model has no files: give 'from' and remote_host")
    if not remote_model:
        raise FlowError(400, "a remote model needs 'from': its name on remote_host")
    try:
        host = normalize_remote_host(remote_host)
    except UpstreamConfigError as exc:
        raise FlowError(400, str(exc), param="remote_host") from None
    parameters = body.get("parameters")
    return CreateModel(
        name=name,
        remote_host=host,
        remote_model=remote_model,
        template=text_field(body, "template"),
        system=text_field(body, "system"),
        parameters=(
            validate_parameters(parameters) if isinstance(parameters, dict) else None
        ),
        messages=_messages(body.get("messages")),
        license=_license(body.get("license")),
        parser=_parser(body),
    )


def _parser(body: Mapping[str, JsonValue]) -> str | None:
    parser = text_field(body, "parser")
    if parser is not None and parser not in FAMILIES:
        raise FlowError(
            400,
            f"unknown parser {parser!r}: one of {', '.join(FAMILIES)}",
            param="parser",
        )
    return parser


def _refuse_case_variant(
    what: str, name: ModelName, other_what: str, other: ModelName
) -> None:
    """A 400 when ``name`` is ``other`` spelled in another letter case.

    Names are case-insensitive identities (a lookup finds either spelling) while the
    store keeps one spelling per model: writing the other spelling would replace the
    model it was made from, so a case-variant copy would be a rename and a
    case-variant create would consume its base. Ollama silently writes onto the
    source under its installed spelling instead, so the new spelling never appears;
    a 400 tells the client why. The exact same name stays allowed: a copy onto
    itself changes nothing and a create from itself rebuilds the model in place.
    """
    if name != other and name.lookup_key == other.lookup_key:
        raise FlowError(
            400,
            f"{what} names the same model as {other_what} (model names ignore case)",
        )


def _files(value: JsonValue) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        return ()
    files = []
    for file_name, digest in value.items():
        if not isinstance(digest, str):
            raise FlowError(400, f"the digest of file '{file_name}' must be a string")
        if "/" in file_name or "\\" in file_name or file_name in ("", ".", ".."):
            raise FlowError(400, f"invalid file name: {file_name!r}")
        try:
            files.append((file_name, parse_digest(digest)))
        except InvalidDigest as exc:
            raise FlowError(400, str(exc)) from None
    return tuple(files)


def _messages(value: JsonValue) -> tuple[Mapping[str, JsonValue], ...] | None:
    if value is None:
        return None
    assert isinstance(value, list)
    messages: list[Mapping[str, JsonValue]] = []
    for index, message in enumerate(value):
        if not (
            isinstance(message, dict)
            and isinstance(message.get("role"), str)
            and isinstance(message.get("content"), str)
        ):
            raise FlowError(
                400, f"messages[{index}] must be an object with string role and content"
            )
        messages.append({"role": message["role"], "content": message["content"]})
    return tuple(messages)


def _license(value: JsonValue) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    assert isinstance(value, list)
    if not all(isinstance(text, str) for text in value):
        raise FlowError(400, "license must be a string or a list of strings")
    return tuple(text for text in value if isinstance(text, str))


def _digest_param(request: Request) -> str:
    try:
        return parse_digest(request.param or "")
    except InvalidDigest as exc:
        raise FlowError(400, str(exc)) from None


def blob_exists(request: Request) -> Flow:
    digest = _digest_param(request)
    found = yield from perform(CheckBlob(digest=digest), BlobPresence)
    if not found.exists:
        raise FlowError(404, f'blob "{digest}" not found')
    yield EmptyReply()


def blob_upload(request: Request) -> Flow:
    digest = _digest_param(request)
    stored = yield from perform(ReceiveBlob(digest=digest), BlobStored)
    yield EmptyReply(status=201 if stored.created else 200)
