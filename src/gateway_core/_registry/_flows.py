"""``/api/pull`` and ``/api/push`` as flows, with Ollama's progress, step for step.

Pull: ``pulling manifest``; fetch and check the manifest; one ``pulling <digest>``
line per blob with ``total`` and ``completed`` as it downloads; ``verifying sha256
digest``; ``writing manifest``; ``success``. Push: ``retrieving manifest``; one
``pushing <digest>`` line per blob; ``pushing manifest``; ``success``. The words and
order are Ollama's, so the official clients' progress bars work unchanged.

Every blob is verified before it becomes visible, and the manifest is written only
when every blob it names is in the store: a pull cut short leaves nothing a lookup
can see (the adapter keeps the partial download to resume it). Like Ollama, the
stream opens before the registry is asked anything, so a registry failure arrives
in-band as ``{"error": ...}``; with ``stream: false`` it is the response's status.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping

from .._flow import (
    MORE,
    Flow,
    FlowError,
    Step,
    StreamItem,
    StreamOpen,
    perform,
    succeeded,
)
from .._json import JsonValue
from .._manifest import Manifest, ManifestError
from .._model_ops import body_of, parse_name, perform_on_model, requested_name
from .._names import DEFAULT_HOST, DEFAULT_NAMESPACE, ModelName
from .._replies import JsonReply
from .._request import Request
from .._work import (
    DownloadBlob,
    FetchManifest,
    InstallManifest,
    ManifestData,
    PutManifest,
    ReadManifest,
    Result,
    StoreDone,
    TransferDone,
    TransferProgress,
    UploadBlob,
)
from ._reference import RegistryReference, registry_host_problem

__all__ = ["pull_model", "pulled_manifest", "push_model", "transfer_status"]


class _Progress:
    """Sends progress lines on a stream, or keeps the last for a single answer."""

    def __init__(self, streaming: bool) -> None:
        self.streaming = streaming
        self.last: Mapping[str, JsonValue] = {"status": "success"}

    def emit(self, value: Mapping[str, JsonValue]) -> Generator[Step, None, None]:
        self.last = value
        if self.streaming:
            yield StreamItem.ndjson(dict(value))

    def status(self, text: str) -> Generator[Step, None, None]:
        yield from self.emit({"status": text})

    def finish(self) -> Generator[Step, None, None]:
        """``success``: the stream's last line, or the whole answer."""
        yield from self.status("success")
        if not self.streaming:
            yield JsonReply(value=dict(self.last))


def transfer_status(verb: str, digest: str) -> str:
    """``pulling 6a0746a1ec1a``: Ollama shows the first 12 hex digits."""
    return f"{verb} {digest.removeprefix('sha256:')[:12]}"


def pulled_manifest(data: bytes) -> Manifest:
    """Check a registry's manifest before anything is downloaded for it.

    Raises:
        FlowError(502): the registry answered something that is not a model
            manifest this server can serve (a container image, a broken file).
    """
    try:
        return Manifest.from_bytes(data)
    except ManifestError as exc:
        raise FlowError(502, f"the registry's manifest is not a model: {exc}") from None


def _start(
    request: Request,
) -> tuple[ModelName, RegistryReference, _Progress]:
    body = body_of(request)
    as_given = requested_name(body)
    if not as_given:
        raise FlowError(400, "model is required")
    name = parse_name(as_given, invalid="invalid model name")
    config = request.config
    host, namespace, insecure = name.host, name.namespace, body.get("insecure") is True
    if host == DEFAULT_HOST:
        # A name without a host goes to the configured default registry (and
        # namespace, when it names none either); it keeps its short name here.
        host, insecure = config.registry, insecure or config.registry_insecure
        if namespace == DEFAULT_NAMESPACE:
            namespace = config.registry_namespace
    problem = registry_host_problem(host)
    if problem is not None:
        raise FlowError(400, f"invalid model name: its registry {problem}")
    reference = RegistryReference.of(
        name, insecure=insecure, host=host, namespace=namespace
    )
    return name, reference, _Progress(body.get("stream") is not False)


def _blobs(manifest: Manifest) -> list[tuple[str, int]]:
    """Each distinct blob, layers first and the config last, as Ollama orders them."""
    seen: dict[str, int] = {}
    for layer in (*manifest.layers, manifest.config):
        seen.setdefault(layer.digest, layer.size)
    return list(seen.items())


def _transfer(
    effect: DownloadBlob | UploadBlob, verb: str, progress: _Progress
) -> Generator[Step, Result | None, None]:
    """Perform one blob transfer, a progress line for each of its results."""
    status = transfer_status(verb, effect.digest)
    result = succeeded((yield effect))
    while True:
        match result:
            case TransferProgress(completed=completed, total=total):
                yield from progress.emit(
                    {
                        "status": status,
                        "digest": effect.digest,
                        "total": total,
                        "completed": completed,
                    }
                )
                result = succeeded((yield MORE))
            case TransferDone():
                yield from progress.emit(
                    {
                        "status": status,
                        "digest": effect.digest,
                        "total": effect.size,
                        "completed": effect.size,
                    }
                )
                return
            case _:
                raise TypeError(f"core bug: {result!r} does not answer a transfer")


def pull_model(request: Request) -> Flow:
    name, reference, progress = _start(request)
    if progress.streaming:
        yield StreamOpen()
    yield from progress.status("pulling manifest")
    fetched = yield from perform(FetchManifest(reference=reference), ManifestData)
    manifest = pulled_manifest(fetched.data)
    for digest, size in _blobs(manifest):
        effect = DownloadBlob(reference=reference, digest=digest, size=size)
        yield from _transfer(effect, "pulling", progress)
    # Each blob was verified as its download finished, before it was renamed into
    # place; the line is kept because clients wait for it between the two phases.
    yield from progress.status("verifying sha256 digest")
    yield from progress.status("writing manifest")
    yield from perform(InstallManifest(name=name, data=fetched.data), StoreDone)
    yield from progress.finish()


def push_model(request: Request) -> Flow:
    name, reference, progress = _start(request)
    if progress.streaming:
        yield StreamOpen()
    yield from progress.status("retrieving manifest")
    stored = yield from perform_on_model(
        ReadManifest(name=name),
        ManifestData,
        not_found=f'model "{name.display}" not found',
    )
    try:
        manifest = Manifest.from_bytes(stored.data)
    except ManifestError as exc:
        raise FlowError(500, f"the stored manifest is invalid: {exc}") from None
    for digest, size in _blobs(manifest):
        effect = UploadBlob(reference=reference, digest=digest, size=size)
        yield from _transfer(effect, "pushing", progress)
    yield from progress.status("pushing manifest")
    yield from perform(PutManifest(reference=reference, data=stored.data), StoreDone)
    yield from progress.finish()
