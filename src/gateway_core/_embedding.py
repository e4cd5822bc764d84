"""``/api/embed`` and ``/api/embeddings``: inputs to vectors (ollama-api.md §6).

Both endpoints are one flow: look the model up, hold an embedding runner, run the
truncate-and-retry machine (``_embed_truncation``), then finish each vector
(``_vectors``). They differ only in shape: ``/api/embed`` takes a list, normalizes
and reports metrics; the legacy ``/api/embeddings`` takes one ``prompt`` and returns
its raw vector, as Ollama always has.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass

from ._acquire import acquire
from ._durations import keep_alive_seconds
from ._embed_truncation import EmbedFailed, EmbedFinished, TruncateRetry
from ._flow import Flow, FlowError, Step, perform, succeeded
from ._json import JsonValue
from ._model_ops import body_of, perform_on_model, requested_name
from ._names import InvalidModelName, ModelName
from ._options import resolve_options
from ._replies import JsonReply
from ._request import Request
from ._vectors import finish_vector
from ._work import LookupModel, ModelFound, Result, RunnerReady

__all__ = ["EmbedOutcome", "EmbedRequest", "embed", "embed_vectors", "embeddings"]

_NS = 1_000_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbedRequest:
    """An embedding request, checked.

    Attributes:
        model_text, model: the model as written, and parsed.
        inputs: the texts; () means "just load the model".
        truncate: shorten inputs that overflow the context instead of failing.
        dimensions: keep only the first values of each vector, or None for all.
        normalize: L2-normalize (``normalize: false`` is our extension).
        legacy: ``/api/embeddings``: one raw vector, no metrics.
    """

    model_text: str
    model: ModelName
    inputs: tuple[str, ...]
    truncate: bool = True
    dimensions: int | None = None
    normalize: bool = True
    legacy: bool = False
    options: Mapping[str, JsonValue] | None = None
    keep_alive: float | None = None


def _model(body: Mapping[str, JsonValue], *, legacy: bool) -> tuple[str, ModelName]:
    text = requested_name(body)
    if not text:
        # Ollama's asymmetry (§1.9), kept: embed says 404, the legacy route 400.
        if legacy:
            raise FlowError(400, "model is required")
        raise FlowError(404, 'model "" not found, try pulling it first')
    try:
        return text, ModelName.parse(text)
    except InvalidModelName:
        raise FlowError(400, "invalid model name") from None


def _inputs(value: JsonValue) -> tuple[str, ...]:
    # A bare "" is no input at all (load only), while [""] embeds the empty string:
    # Ollama's rule, kept.
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(item for item in value if isinstance(item, str))
    raise FlowError(400, "invalid input type", param="input")


def _options(body: Mapping[str, JsonValue]) -> Mapping[str, JsonValue] | None:
    options = body.get("options")
    return options if isinstance(options, dict) else None


def embed_request(body: Mapping[str, JsonValue]) -> EmbedRequest:
    model_text, model = _model(body, legacy=False)
    dimensions = body.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or dimensions < 1):
        raise FlowError(400, "dimensions must be at least 1", param="dimensions")
    return EmbedRequest(
        model_text=model_text,
        model=model,
        inputs=_inputs(body.get("input")),
        truncate=body.get("truncate") is not False,
        dimensions=dimensions if isinstance(dimensions, int) else None,
        normalize=body.get("normalize") is not False,
        options=_options(body),
        keep_alive=keep_alive_seconds(body.get("keep_alive")),
    )


def embeddings_request(body: Mapping[str, JsonValue]) -> EmbedRequest:
    model_text, model = _model(body, legacy=True)
    prompt = body.get("prompt")
    return EmbedRequest(
        model_text=model_text,
        model=model,
        inputs=(prompt,) if isinstance(prompt, str) and prompt else (),
        truncate=body.get("truncate") is not False,
        normalize=False,
        legacy=True,
        options=_options(body),
        keep_alive=keep_alive_seconds(body.get("keep_alive")),
    )


def embed(request: Request) -> Flow:
    yield from _serve(embed_request(body_of(request)), request)


def embeddings(request: Request) -> Flow:
    yield from _serve(embeddings_request(body_of(request)), request)


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbedOutcome:
    """Finished vectors (cut and normalized as asked) and what they cost."""

    vectors: list[list[float]]
    prompt_tokens: int
    load_duration: float


def _serve(wanted: EmbedRequest, request: Request) -> Flow:
    outcome = yield from embed_vectors(wanted, request)
    vectors = _json_vectors(outcome)
    if wanted.legacy:
        yield JsonReply(value={"embedding": vectors[0] if vectors else []})
        return
    body: dict[str, JsonValue] = {
        "model": wanted.model_text,
        "embeddings": vectors,
    }
    if outcome.vectors:
        body["total_duration"] = round(request.timeline.elapsed * _NS)
        body["load_duration"] = round(outcome.load_duration * _NS)
        body["prompt_eval_count"] = outcome.prompt_tokens
    yield JsonReply(value=body)


def _json_vectors(outcome: EmbedOutcome) -> list[JsonValue]:
    return [list[JsonValue](vector) for vector in outcome.vectors]


def embed_vectors(
    wanted: EmbedRequest, request: Request
) -> Generator[Step, Result | None, EmbedOutcome]:
    """The embedding flow up to finished vectors; each API shapes its own answer.
    No inputs: the model is loaded and the outcome is empty."""
    found = yield from perform_on_model(
        LookupModel(name=wanted.model),
        ModelFound,
        not_found=f'model "{wanted.model_text}" not found, try pulling it first',
    )
    record = found.record
    options = resolve_options(record.parameters, wanted.options)
    if options.ignored_note is not None:
        request.notes.append(options.ignored_note)
    runner = acquire(
        record,
        options.load,
        request.config,
        keep_alive=wanted.keep_alive,
        embedding=True,
    )
    ready = yield from perform(runner, RunnerReady)
    if not wanted.inputs:  # load only
        return EmbedOutcome(vectors=[], prompt_tokens=0, load_duration=0.0)
    machine = TruncateRetry(
        wanted.inputs, tokenizer=ready.tokenizer, truncate=wanted.truncate
    )
    step = machine.start()
    while not isinstance(step, EmbedFinished | EmbedFailed):
        step = machine.feed(succeeded((yield step)))
    if isinstance(step, EmbedFailed):
        raise FlowError(step.status, step.message)
    if machine.cuts:
        request.notes.append(f"truncated {machine.cuts} embedding input(s) to fit")
    return _finish(wanted, step, ready)


def _finish(
    wanted: EmbedRequest, finished: EmbedFinished, ready: RunnerReady
) -> EmbedOutcome:
    result = finished.result
    width = len(result.vectors[0]) if result.vectors else 0
    if wanted.dimensions is not None and wanted.dimensions > width:
        raise FlowError(
            400,
            f"dimensions must be at most {width}, the size of this model's vectors",
            param="dimensions",
        )
    try:
        vectors = [
            finish_vector(
                vector, dimensions=wanted.dimensions, normalize=wanted.normalize
            )
            for vector in result.vectors
        ]
    except ValueError as exc:
        raise FlowError(500, str(exc)) from None
    return EmbedOutcome(
        vectors=vectors,
        prompt_tokens=sum(result.token_counts),
        load_duration=ready.load_duration,
    )
