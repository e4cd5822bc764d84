"""Work effects and their results: what the core asks of the model store and runner.

A response effect (``StartResponse``, ``SendBody``, ``EndResponse``) is fire and
forget. A work effect is a question: the adapter performs it (read a manifest, load a
model, run a generation) and feeds the answer back with ``Exchange.receive_result``.
Each effect names the results that may answer it in ``answers``; any effect may also be
answered by ``WorkFailed``. Anything else is adapter misuse and raises.

Most effects have exactly one result. ``Generate`` has many: ``PromptEvaluated`` once,
then one ``Piece`` per token, then ``GenerationDone``; after each, the exchange says
what to send and asks for the next. It may stop asking at any time (a stop string
matched, ``num_predict`` was reached, the client left): the adapter then closes the
generation when the exchange hands out its next work effect or finishes. That is how
cancellation lands between tokens.

Times inside results are durations in seconds measured by the adapter; wall-clock
instants come in as the ``now`` argument of ``receive_result``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal, TypeAlias

from ._call_forms import CallForms
from ._json import JsonValue
from ._logprobs import MAX_TOP_LOGPROBS, TokenLogprob
from ._models import ModelRecord
from ._names import ModelName
from ._options import LoadOptions, SamplingOptions
from ._registry._reference import RegistryReference
from ._responses._effects import (
    DropResponse,
    LoadResponse,
    ResponseDropped,
    ResponseLoaded,
    SaveResponse,
)
from ._upstream._effects import (
    ProxyCompletion,
    UpstreamBytes,
    UpstreamEnded,
    UpstreamOpened,
)
from ._upstream._router import UpstreamState

__all__ = [
    "AcquireRunner",
    "BlobPresence",
    "BlobStored",
    "CheckBlob",
    "CheckSchema",
    "CollectMetrics",
    "ContextOverflow",
    "CopyModel",
    "CreateModel",
    "DeleteModel",
    "Detokenize",
    "DownloadBlob",
    "Embed",
    "Embedded",
    "FetchManifest",
    "Generate",
    "GenerationDone",
    "InstallManifest",
    "ListModels",
    "ListRunning",
    "LookupModel",
    "ManifestData",
    "MetricsText",
    "ModelCreated",
    "ModelFound",
    "ModelList",
    "Piece",
    "PromptEvaluated",
    "PutManifest",
    "ReadManifest",
    "ReceiveBlob",
    "Result",
    "RunnerReady",
    "RunningList",
    "RunningModel",
    "SchemaSupported",
    "StoreDone",
    "Text",
    "Tokenize",
    "TokenizerInfo",
    "Tokens",
    "ToolCallConstraint",
    "TransferDone",
    "TransferProgress",
    "UnloadModel",
    "Unloaded",
    "UploadBlob",
    "WorkEffect",
    "WorkFailed",
]


def _check_seconds(name: str, value: float) -> None:
    if not value >= 0:  # also refuses NaN
        raise ValueError(f"{name} must be a non-negative number of seconds")


# -- results -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkFailed:
    """The work could not be done. ``status`` is the HTTP status the failure earns:
    404 for a model that is gone, 503 for a full queue, 400 for a bad upload, 500 for
    a model file llama.cpp cannot load."""

    status: int
    message: str

    def __post_init__(self) -> None:
        if not 400 <= self.status <= 599:
            raise ValueError(
                f"a failure's status must be 4xx or 5xx, not {self.status}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelFound:
    record: ModelRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelList:
    records: tuple[ModelRecord, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunningModel:
    """One loaded model, for ``/api/ps``."""

    record: ModelRecord
    expires_at: float
    """Unix seconds; ``math.inf`` when kept loaded forever."""
    context_length: int
    slots_busy: int = 0
    """Requests being served right now."""
    slots_total: int = 1
    """Requests the runner serves at once (``num_parallel``)."""
    waiting: int = 0
    """Requests queued for this model, waiting for a slot."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunningList:
    models: tuple[RunningModel, ...]
    upstreams: tuple[UpstreamState, ...] = ()
    """The upstreams the server routes to, as its router knows them now."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreDone:
    """A copy or delete finished."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelCreated:
    statuses: tuple[str, ...]
    """The progress messages of the creation, in order, without the final success."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BlobPresence:
    exists: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class BlobStored:
    created: bool
    """False when the blob was already in the store."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenizerInfo:
    """What the core must know of a loaded model's tokenizer to budget tokens,
    filled in by the adapter from the GGUF metadata (the core reads no raw keys).

    Attributes:
        context_length: tokens the runner's context holds.
        add_bos: tokenizing a whole input adds a BOS token in front.
        add_eos: tokenizing a whole input adds an EOS token at the end.
    """

    context_length: int
    add_bos: bool
    add_eos: bool

    def __post_init__(self) -> None:
        if self.context_length < 1:
            raise ValueError("context_length must be positive")

    @property
    def special_tokens(self) -> int:
        """Tokens the runner adds around an input's own."""
        return int(self.add_bos) + int(self.add_eos)


@dataclass(frozen=True, slots=True, kw_only=True)
class SchemaSupported:
    """The constraint engine can enforce the schema."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunnerReady:
    """The model is loaded and this request holds it until the exchange ends."""

    load_duration: float
    """Seconds spent loading for this request; 0 when it was already loaded."""
    tokenizer: TokenizerInfo

    def __post_init__(self) -> None:
        _check_seconds("load_duration", self.load_duration)

    @property
    def context_length(self) -> int:
        """The context size the runner was loaded with."""
        return self.tokenizer.context_length


@dataclass(frozen=True, slots=True, kw_only=True)
class Unloaded:
    """The model is unloaded, or will be as soon as its requests in flight end."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Tokens:
    ids: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Text:
    text: str
    data: bytes = b""
    """The exact bytes, when ``text`` had to replace a cut character."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Embedded:
    """One vector per input, in input order, as the model gave them (not normalized),
    and how many tokens each input took."""

    vectors: tuple[tuple[float, ...], ...]
    token_counts: tuple[int, ...]
    duration: float

    def __post_init__(self) -> None:
        if len(self.vectors) != len(self.token_counts):
            raise ValueError("one token count per vector")
        _check_seconds("duration", self.duration)


@dataclass(frozen=True, slots=True, kw_only=True)
class ContextOverflow:
    """Input ``index`` is ``tokens`` long once tokenized: more than the context
    holds. Nothing was embedded; nothing was truncated."""

    index: int
    tokens: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptEvaluated:
    """The prompt is in the model's context; generation starts next."""

    count: int
    """Prompt tokens evaluated now."""
    duration: float
    cached: int = 0
    """Prompt tokens the runner's cache held already (a chat's earlier turns): free,
    and not in ``count``. The prompt's length is ``count + cached``."""

    def __post_init__(self) -> None:
        _check_seconds("duration", self.duration)
        if self.count < 0 or self.cached < 0:
            raise ValueError("token counts cannot be negative")


@dataclass(frozen=True, slots=True, kw_only=True)
class Piece:
    """One generated token: its id and its bytes (possibly part of a character)."""

    token: int
    data: bytes
    duration: float
    """Seconds this token took to compute."""
    logprob: TokenLogprob | None = None
    """Its logprob and alternatives, when the generation asked for them."""

    def __post_init__(self) -> None:
        _check_seconds("duration", self.duration)


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerationDone:
    """The model ended the generation: an end-of-generation token (``stop``) or a
    full context (``length``)."""

    reason: Literal["stop", "length"]


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsText:
    """The server's metrics in a text exposition format, e.g. Prometheus'."""

    text: str
    media_type: str


# -- registry results (pull and push) --------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ManifestData:
    """A manifest's bytes, exactly as stored or served: its hash is the model's
    digest, so it is never re-serialized on the way."""

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferProgress:
    """Bytes of one blob transferred so far (many per transfer)."""

    completed: int
    total: int

    def __post_init__(self) -> None:
        if not 0 <= self.completed <= self.total:
            raise ValueError("progress must be between 0 and the total")


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferDone:
    """The blob is in place: verified and visible (pull), or in the registry (push).
    ``existed``: nothing had to move, it was there already."""

    existed: bool = False


Result: TypeAlias = (
    WorkFailed
    | MetricsText
    | ModelFound
    | ModelList
    | RunningList
    | StoreDone
    | ModelCreated
    | BlobPresence
    | BlobStored
    | RunnerReady
    | Unloaded
    | SchemaSupported
    | Tokens
    | Text
    | Embedded
    | ContextOverflow
    | PromptEvaluated
    | Piece
    | GenerationDone
    | ManifestData
    | TransferProgress
    | TransferDone
    | ResponseLoaded
    | UpstreamOpened
    | UpstreamBytes
    | UpstreamEnded
    | ResponseDropped
)


# -- effects -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LookupModel:
    """Find an installed model by name (case-insensitively)."""

    answers: ClassVar[tuple[type, ...]] = (ModelFound,)
    name: ModelName
    verbose: bool = False
    """Keep long GGUF arrays in ``model_info`` (``/api/show`` with ``verbose``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ListModels:
    answers: ClassVar[tuple[type, ...]] = (ModelList,)


@dataclass(frozen=True, slots=True, kw_only=True)
class ListRunning:
    answers: ClassVar[tuple[type, ...]] = (RunningList,)


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyModel:
    answers: ClassVar[tuple[type, ...]] = (StoreDone,)
    source: ModelName
    destination: ModelName


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteModel:
    answers: ClassVar[tuple[type, ...]] = (StoreDone,)
    name: ModelName


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateModel:
    """Write a manifest for ``name`` from GGUF blobs (``files``) or another model
    (``base``), with the given layers replaced. Parameters are already validated."""

    answers: ClassVar[tuple[type, ...]] = (ModelCreated,)
    name: ModelName
    files: tuple[tuple[str, str], ...] = ()
    """(file name, blob digest) pairs."""
    base: ModelName | None = None
    template: str | None = None
    system: str | None = None
    parameters: Mapping[str, JsonValue] | None = None
    messages: tuple[Mapping[str, JsonValue], ...] | None = None
    license: tuple[str, ...] | None = None
    parser: str | None = None
    """The model family whose parser reads its output (checked by the core)."""
    remote_host: str | None = None
    """A remote model's host, normalized: it runs there and has no file."""
    remote_model: str | None = None
    """A remote model's name on its host."""

    def __post_init__(self) -> None:
        sources = bool(self.files) + (self.base is not None) + bool(self.remote_host)
        if sources != 1:
            raise ValueError(
                "a model is created from files, from a base, or as a remote model"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckBlob:
    answers: ClassVar[tuple[type, ...]] = (BlobPresence,)
    digest: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiveBlob:
    """Stream the request body into the store as blob ``digest``.

    The only effect that reads the request body: it may be gigabytes, so it goes to a
    file as it arrives instead of through the exchange.
    """

    answers: ClassVar[tuple[type, ...]] = (BlobStored,)
    digest: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AcquireRunner:
    """Get a loaded runner for ``model`` and hold it for the rest of the exchange.

    The adapter loads the model if needed (queueing behind other loads and evicting
    idle models as the scheduler decides) and releases it when the exchange ends.
    ``keep_alive`` is seconds (``math.inf``: forever), or None to keep the runner's
    current setting.
    """

    answers: ClassVar[tuple[type, ...]] = (RunnerReady,)
    model: ModelRecord
    load: LoadOptions
    context_length: int
    keep_alive: float | None = None
    embedding: bool = False
    """A runner that embeds (pooled vectors) rather than one that generates; a
    model may have one of each loaded."""
    parallel: int = 1
    """The runner's slots: how many requests it serves at once, each with a context
    of ``context_length`` tokens. Part of how it is loaded: another count reloads."""

    def __post_init__(self) -> None:
        if self.context_length < 1 or self.parallel < 1:
            raise ValueError("a runner needs a context and at least one slot")


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectMetrics:
    """Ask for the server's metrics (``GET /metrics``). A server that keeps none
    fails it with 404, saying how to turn them on."""

    answers: ClassVar[tuple[type, ...]] = (MetricsText,)


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckSchema:
    """Ask the constraint engine whether it can enforce ``schema``, before any model
    is loaded. A schema it cannot enforce fails the work with 400, naming the
    keyword and its JSON pointer: nothing is ever silently unconstrained."""

    answers: ClassVar[tuple[type, ...]] = (SchemaSupported,)
    schema: Mapping[str, JsonValue]


@dataclass(frozen=True, slots=True, kw_only=True)
class UnloadModel:
    answers: ClassVar[tuple[type, ...]] = (Unloaded,)
    model: ModelRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class Tokenize:
    """Tokenize with the held runner's vocabulary; special tokens are recognised."""

    answers: ClassVar[tuple[type, ...]] = (Tokens,)
    text: str
    add_bos: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Detokenize:
    """Turn tokens of the held runner's vocabulary back into text."""

    answers: ClassVar[tuple[type, ...]] = (Text,)
    ids: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Embed:
    """Embed each text with the held (embedding) runner, tokenized with its special
    tokens. An input longer than the context is reported, never cut."""

    answers: ClassVar[tuple[type, ...]] = (Embedded, ContextOverflow)
    texts: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.texts:
            raise ValueError("Embed needs at least one text")


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallConstraint:
    """Tool calls in free text, constrained once they open (a lazy grammar).

    The output is free until ``marker``; from there it must be one call
    (``call_schema``: ``{"name", "arguments"}`` of an offered tool) or an array of
    calls, then ``closing`` (empty: the body ends where its JSON value does). An
    empty ``marker`` means the format writes a call as a bare JSON value at the
    start of the answer.
    """

    marker: str
    closing: str
    call_schema: Mapping[str, JsonValue]


@dataclass(frozen=True, slots=True, kw_only=True)
class Generate:
    """Run the held runner on ``prompt`` and report every token."""

    answers: ClassVar[tuple[type, ...]] = (PromptEvaluated, Piece, GenerationDone)
    prompt: tuple[int, ...]
    sampling: SamplingOptions
    format: JsonValue = None
    """Constrain the output: ``"json"`` (any JSON object) or a JSON schema (an
    object), enforced token by token; None leaves the model free. A schema the
    constraint engine cannot enforce fails the work with 400."""
    tool_calls: ToolCallConstraint | None = None
    """Leave the text free but constrain the tool calls it opens."""
    call_forms: CallForms | None = None
    """The output is one forced tool call in one of these forms (the family's own
    markup, ``_call_forms``)."""
    limit: int = 0
    """Tokens the core will take at most (``num_predict``); 0: no limit. The runner
    makes none past it, rather than working ahead for tokens nobody will read."""
    logprobs: int | None = None
    """Report each token's logprob with this many alternatives (``Piece.logprob``);
    None: none."""
    constraint_prefix: tuple[int, ...] = ()
    """With ``format`` or ``call_forms``: tokens of an answer already begun (a
    prefill, ending the prompt) that the constraint accepts before the first token;
    a prefill that does not fit fails the work with 400."""

    def __post_init__(self) -> None:
        if not self.prompt:
            raise ValueError("a generation needs at least one prompt token")
        constraints = (self.format, self.tool_calls, self.call_forms)
        if sum(c is not None for c in constraints) > 1:
            raise ValueError("a generation has one constraint at most")
        if self.constraint_prefix and self.format is None and self.call_forms is None:
            raise ValueError("a constraint prefix needs a format or call forms")
        if self.limit < 0:
            raise ValueError("a generation's limit cannot be negative")
        if self.logprobs is not None and not 0 <= self.logprobs <= MAX_TOP_LOGPROBS:
            raise ValueError(f"logprobs must be None or 0 to {MAX_TOP_LOGPROBS}")


# -- registry effects (pull and push) --------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchManifest:
    """GET the manifest of ``reference`` from its registry (size-bounded)."""

    answers: ClassVar[tuple[type, ...]] = (ManifestData,)
    reference: RegistryReference


@dataclass(frozen=True, slots=True, kw_only=True)
class DownloadBlob:
    """Download blob ``digest`` into the store unless it is there: ranged parts,
    resumed from a partial download, verified before it becomes visible. Answered
    by ``TransferProgress`` results, then ``TransferDone``."""

    answers: ClassVar[tuple[type, ...]] = (TransferProgress, TransferDone)
    reference: RegistryReference
    digest: str
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallManifest:
    """Write ``data`` as the manifest of ``name``, once every blob it names is in
    the store; the previous model of that name is replaced."""

    answers: ClassVar[tuple[type, ...]] = (StoreDone,)
    name: ModelName
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadManifest:
    """The stored manifest of an installed model, byte for byte."""

    answers: ClassVar[tuple[type, ...]] = (ManifestData,)
    name: ModelName


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadBlob:
    """Upload blob ``digest`` unless the registry has it (HEAD): a POST, PATCH
    chunks, a PUT with the digest. Answered like ``DownloadBlob``."""

    answers: ClassVar[tuple[type, ...]] = (TransferProgress, TransferDone)
    reference: RegistryReference
    digest: str
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PutManifest:
    """PUT ``data`` as the manifest of ``reference``: the last step of a push."""

    answers: ClassVar[tuple[type, ...]] = (StoreDone,)
    reference: RegistryReference
    data: bytes


WorkEffect: TypeAlias = (
    LookupModel
    | ListModels
    | ListRunning
    | CopyModel
    | DeleteModel
    | CreateModel
    | CheckBlob
    | ReceiveBlob
    | AcquireRunner
    | CheckSchema
    | CollectMetrics
    | UnloadModel
    | Tokenize
    | Detokenize
    | Embed
    | Generate
    | FetchManifest
    | DownloadBlob
    | InstallManifest
    | ReadManifest
    | UploadBlob
    | PutManifest
    | LoadResponse
    | SaveResponse
    | DropResponse
    | ProxyCompletion
)
