"""One exchange's work: the ``WorkPerformer`` the driver talks to.

``ModelWork`` performs the core's work effects for one exchange on the shared
``ModelService``: store lookups and writes (in worker threads), the lease on a
runner slot and its generation, blob transfers, an upstream's answer. It gives
back what it holds in ``aclose``. Every failure becomes a ``WorkFailed`` with the
status it earns, and a 500 shows no path of this machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.abc
import anyio.to_thread

from gateway_core import (
    AcquireRunner,
    Alternative,
    BlobPresence,
    BlobStored,
    CheckBlob,
    CheckSchema,
    CollectMetrics,
    CopyModel,
    CreateModel,
    DeleteModel,
    Detokenize,
    DownloadBlob,
    DropResponse,
    Embed,
    Embedded,
    FetchManifest,
    Generate,
    GenerationDone,
    InstallManifest,
    ListModels,
    ListRunning,
    LoadResponse,
    LookupModel,
    ManifestData,
    ModelCreated,
    ModelFound,
    ModelList,
    ModelRecord,
    Piece,
    PromptEvaluated,
    ProxyCompletion,
    PutManifest,
    ReadManifest,
    ReceiveBlob,
    ResponseDropped,
    ResponseLoaded,
    Result,
    RunnerReady,
    SamplingOptions,
    SaveResponse,
    SchemaSupported,
    StoreDone,
    Text,
    Tokenize,
    TokenizerInfo,
    TokenLogprob,
    Tokens,
    Unloaded,
    UnloadModel,
    UploadBlob,
    UpstreamOpened,
    WorkEffect,
    WorkFailed,
)
from gateway_core import ContextOverflow as ContextOverflowResult

from .exchange_contract import BodyFailed, BodySource
from .model_store import ModelStore, StoreError
from .registry import RegistryError, TransferWatch
from .runner.client import RemoteGeneration, RunnerProcess
from .runner.errors import (
    BadRequest,
    ContextOverflow,
    PromptTooLong,
    RunnerDied,
    RunnerError,
    UnsupportedSchema,
)
from .runner.grammars import check_schema_support
from .runner.values import (
    GenerationConstraint,
    LoadParams,
    Sampling,
    TokenPiece,
    ToolCallTrigger,
)
from .runner_pool import LoadFailed, PoolClosed, QueueFull
from .upstream import OpenStream

if TYPE_CHECKING:
    from .model_service import ModelService

__all__ = ["LOOKAHEAD", "ModelWork", "pool_key", "runner_key"]

logger = logging.getLogger("adapters.models")

_T = TypeVar("_T")

# How many tokens a generation's thread may make beyond those the exchange has
# taken: enough for llama.cpp to keep working while the event loop formats and
# sends, and for the driver's write interval (2 ms) at 30,000 tokens/s. Only a
# stalled client lets the thread get that far ahead; a disconnect or an early stop
# closes the generation, which then ends within the token in progress.
LOOKAHEAD = 64

# Ollama's words, two spaces included: clients and scripts match on them.
_BUSY = "server busy, please try again.  maximum pending requests exceeded"


_METRICS_OFF = "metrics are off: start the server with --metrics (or GATEWAY_METRICS=1)"


def pool_key(record: ModelRecord, *, embedding: bool) -> str:
    """The pool's name for a runner: per model file, and per purpose, because an
    embedding context (pooled, whole-sequence batches) cannot generate."""
    return runner_key(record.model_digest, embedding=embedding)


def runner_key(model_digest: str, *, embedding: bool) -> str:
    return model_digest + ("#embed" if embedding else "")


class ModelWork:
    """The ``WorkPerformer`` of one exchange."""

    def __init__(self, service: ModelService) -> None:
        self._service = service
        self._store = service.store
        self._stack = contextlib.AsyncExitStack()
        self._runner: RunnerProcess | None = None
        self._generation: RemoteGeneration | None = None
        self._first: Piece | None = None
        self._effect: WorkEffect | None = None
        self._body: BodySource | None = None
        self._transfer: TransferWatch | None = None
        self._answer: OpenStream | None = None
        """An upstream's answer this exchange is reading (``ProxyCompletion``)."""

    async def start(self, effect: WorkEffect, body: BodySource) -> None:
        await self._end_generation()
        await self._end_answer()
        self._end_transfer()
        self._effect, self._body = effect, body

    async def next_result(self) -> Result:
        effect = self._effect
        if effect is None:
            raise RuntimeError("next_result before any work was started")
        try:
            return await self._result(effect)
        except StoreError as exc:
            if exc.status >= 500:
                return _server_failure(exc.message)
            return WorkFailed(status=exc.status, message=exc.message)
        except PromptTooLong:
            return WorkFailed(
                status=400, message="the input length exceeds the context length"
            )
        except BadRequest as exc:
            return WorkFailed(status=400, message=str(exc))
        except RunnerDied as exc:
            return _server_failure("the model's runner stopped", exc)
        except RunnerError as exc:
            return _server_failure("the model failed", exc)
        except RegistryError as exc:
            return WorkFailed(status=exc.status, message=exc.message)

    def ready_result(self) -> Result | None:
        """The next result if it is here already: a token the generation has made."""
        if self._first is not None:
            piece, self._first = self._first, None
            return piece
        if self._generation is None or not isinstance(self._effect, Generate):
            return None
        token = self._generation.next_ready()
        return None if token is None else _piece(token)

    async def aclose(self) -> None:
        await self._end_generation()
        await self._end_answer()
        self._end_transfer()
        await self._stack.aclose()

    async def _end_answer(self) -> None:
        """Close an upstream's answer: its connection closes, so the upstream
        stops working for a client that is gone."""
        if self._answer is not None:
            answer, self._answer = self._answer, None
            await answer.aclose()

    def _end_transfer(self) -> None:
        """Stop a transfer nobody waits for any more; a download keeps its
        partial file, so the next pull resumes it."""
        if self._transfer is not None:
            self._transfer.scope.cancel()
            self._transfer = None

    # -- one effect at a time ------------------------------------------------------

    async def _result(self, effect: WorkEffect) -> Result:
        store = self._store
        match effect:
            case LookupModel(name=name, verbose=verbose):
                # Cached: two stat calls, cheaper than the hop to a worker thread.
                record = store.cached_lookup(name)
                if record is None:
                    record = await _thread(lambda: store.lookup(name))
                if verbose:
                    info = await _thread(partial(store.show_info, record, verbose=True))
                    record = dataclasses.replace(record, model_info=info)
                return ModelFound(record=record)
            case ListModels():
                return ModelList(records=tuple(await _thread(store.list_models)))
            case ListRunning():
                return self._service.running()
            case CollectMetrics():
                metrics = self._service.metrics
                if metrics is None:
                    return WorkFailed(status=404, message=_METRICS_OFF)
                return metrics.exposition()
            case CopyModel(source=source, destination=destination):
                await _thread(lambda: store.copy(source, destination))
                return StoreDone()
            case DeleteModel(name=name):
                model_digest = await _thread(lambda: store.delete(name))
                if model_digest is not None:
                    self._service.retire(model_digest)
                return StoreDone()
            case CreateModel():
                statuses = await _thread(lambda: _create(store, effect))
                return ModelCreated(statuses=tuple(statuses))
            case CheckBlob(digest=digest):
                return BlobPresence(
                    exists=await _thread(lambda: store.has_blob(digest))
                )
            case ReceiveBlob(digest=digest):
                return await self._receive_blob(digest)
            case AcquireRunner():
                return await self._acquire(effect)
            case CheckSchema(schema=schema):
                # Cached, and well under a millisecond when not: no thread hop.
                try:
                    check_schema_support(schema)
                except UnsupportedSchema as exc:
                    return WorkFailed(status=400, message=str(exc))
                return SchemaSupported()
            case UnloadModel(model=record):
                for embedding in (False, True):
                    await self._service.pool.unload(
                        pool_key(record, embedding=embedding)
                    )
                return Unloaded()
            case Tokenize(text=text, add_bos=add_bos):
                ids = await self._held().tokenize(text, add_bos=add_bos)
                return Tokens(ids=tuple(ids))
            case Detokenize(ids=ids):
                data = await self._held().detokenize(ids)
                return Text(text=data.decode("utf-8", errors="replace"), data=data)
            case Embed(texts=texts):
                return await self._embed(texts)
            case Generate():
                return await self._next_token(effect)
            case FetchManifest(reference=reference):
                data = await self._service.registry.client.fetch_manifest(reference)
                return ManifestData(data=data)
            case DownloadBlob() | UploadBlob():
                return await self._transfer_result(effect)
            case InstallManifest(name=name, data=data):
                await _thread(lambda: store.install_pulled(name, data))
                return StoreDone()
            case ReadManifest(name=name):
                data = await _thread(lambda: store.manifest_data(name))
                return ManifestData(data=data)
            case PutManifest(reference=reference, data=data):
                await self._service.registry.client.put_manifest(reference, data)
                return StoreDone()
            case LoadResponse(response_id=response_id):
                return ResponseLoaded(stored=self._service.responses.get(response_id))
            case SaveResponse(response_id=response_id, stored=stored):
                kept = self._service.responses.put(response_id, stored)
                return ResponseDropped(found=kept)
            case DropResponse(response_id=response_id):
                return ResponseDropped(found=self._service.responses.drop(response_id))
            case ProxyCompletion():
                return await self._proxied(effect)

    async def _proxied(self, effect: ProxyCompletion) -> Result:
        """The upstream's opening on the first call; then its bytes, its end."""
        if self._answer is None:
            opened = await self._service.upstreams.open(effect)
            if isinstance(opened, WorkFailed):
                return opened
            self._answer = opened
            return UpstreamOpened(upstream=opened.name, kind=opened.kind)
        return await self._answer.next()

    async def _transfer_result(self, effect: DownloadBlob | UploadBlob) -> Result:
        """Start the transfer on the first call; then its next progress or end."""
        if self._transfer is None:
            registry = self._service.registry
            ref, digest, size = effect.reference, effect.digest, effect.size
            download = isinstance(effect, DownloadBlob)
            move = registry.download if download else registry.upload
            self._transfer = registry.start(
                self._service.transfer_tasks(),
                size,
                lambda watch: move(ref, digest, size, watch),
            )
        return await self._transfer.next()

    def _held(self) -> RunnerProcess:
        if self._runner is None:
            raise RuntimeError("core bug: runner work before AcquireRunner")
        return self._runner

    async def _receive_blob(self, digest: str) -> Result:
        assert self._body is not None
        writer = await _thread(lambda: self._store.blob_writer(digest))
        try:
            async for chunk in self._body():
                await anyio.to_thread.run_sync(writer.write, chunk)
            created = await _thread(writer.commit)
        except BodyFailed as exc:
            await _thread(writer.abort)
            return WorkFailed(status=exc.status, message=exc.message)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await _thread(writer.abort)
            raise
        return BlobStored(created=created)

    async def _acquire(self, effect: AcquireRunner) -> Result:
        if self._runner is not None:
            raise RuntimeError("core bug: a second AcquireRunner in one exchange")
        record, load = effect.model, effect.load
        spec = LoadParams(
            model_file=record.model_file,
            n_ctx=effect.context_length,
            n_batch=load.num_batch,
            n_threads=load.num_thread,
            use_mmap=load.use_mmap,
            n_gpu_layers=load.num_gpu,
            main_gpu=load.main_gpu,
            embedding=effect.embedding,
            slots=effect.parallel,
        )
        key = pool_key(record, embedding=effect.embedding)
        self._service.name_model(key, record.name)
        pool = self._service.pool
        try:
            lease = await self._stack.enter_async_context(
                pool.lease(key, spec, effect.keep_alive, slots=spec.slots)
            )
        except QueueFull:
            return WorkFailed(status=503, message=_BUSY)
        except PoolClosed:
            return WorkFailed(status=503, message="the server is shutting down")
        except LoadFailed as exc:
            return _server_failure(f"model '{record.name}' failed to load", exc)
        self._runner = lease.runner
        self._service.remember(key, record, spec.n_ctx)
        info = lease.runner.model_info
        tokenizer = TokenizerInfo(
            context_length=spec.n_ctx, add_bos=info.add_bos, add_eos=info.add_eos
        )
        return RunnerReady(load_duration=lease.load_duration, tokenizer=tokenizer)

    async def _embed(self, texts: tuple[str, ...]) -> Result:
        runner = self._held()
        started = time.perf_counter()
        # The runner adds the BOS/EOS tokens the vocabulary asks for, as the
        # TokenizerInfo it reported told the core.
        inputs = [await runner.tokenize(text, add_bos=True) for text in texts]
        for index, tokens in enumerate(inputs):
            if not tokens:
                return WorkFailed(
                    status=400,
                    message=f"input {index} has no tokens to embed with this model",
                )
        try:
            embedded = await runner.embed(inputs)
        except ContextOverflow as exc:
            return ContextOverflowResult(index=exc.index, tokens=exc.count)
        return Embedded(
            vectors=embedded.vectors,
            token_counts=tuple(len(tokens) for tokens in inputs),
            duration=time.perf_counter() - started,
        )

    async def _next_token(self, effect: Generate) -> Result:
        generation = self._generation
        if generation is None:
            # The first result: evaluating the prompt happens in the first pull, with
            # the first token, which is kept for the next call.
            try:
                sampling = _sampling(effect.sampling)
            except ValueError as exc:
                return WorkFailed(status=400, message=f"invalid option: {exc}")
            runner = self._held()
            if any(not 0 <= t < runner.model_info.n_vocab for t in effect.prompt):
                # The only tokens the core did not get from this runner come from a
                # client's ``context``: ids this vocabulary doesn't have.
                return WorkFailed(
                    status=400,
                    message="context holds token ids outside the model's vocabulary",
                )
            generation = self._generation = runner.generate(
                effect.prompt,
                sampling,
                _constraint(effect),
                lookahead=LOOKAHEAD,
                limit=effect.limit,
                logprobs=effect.logprobs,
                constraint_prefix=effect.constraint_prefix,
            )
            # The runner compiles the constraint (cached per model), evaluates the
            # prompt and makes the first token; it is kept for the next call.
            self._first = await self._pull(generation)
            return PromptEvaluated(
                count=generation.prompt_eval_count,
                cached=generation.prompt_reused_count,
                duration=generation.prompt_eval_duration,
            )
        piece, self._first = self._first, None
        if piece is None:
            piece = await self._pull(generation)
        if piece is None:
            reason = generation.done_reason
            return GenerationDone(reason="length" if reason == "length" else "stop")
        return piece

    async def _pull(self, generation: RemoteGeneration) -> Piece | None:
        try:
            return _piece(await generation.__anext__())
        except StopAsyncIteration:
            return None

    async def _end_generation(self) -> None:
        if self._generation is not None:
            generation, self._generation, self._first = self._generation, None, None
            await generation.aclose()
            logger.debug(
                "generation closed: %s tokens made, %d taken",
                generation.tokens_made,
                generation.eval_count,
            )


def _constraint(effect: Generate) -> GenerationConstraint | None:
    if effect.call_forms is not None:
        return GenerationConstraint(call_forms=json.dumps(effect.call_forms.to_json()))
    if effect.tool_calls is not None:
        calls = effect.tool_calls
        return GenerationConstraint(
            tool_calls=ToolCallTrigger(
                marker=calls.marker,
                closing=calls.closing,
                call_schema=json.dumps(calls.call_schema),
            )
        )
    if effect.format is None:
        return None
    schema = "json" if effect.format == "json" else json.dumps(effect.format)
    return GenerationConstraint(json_schema=schema)


def _piece(token: TokenPiece) -> Piece:
    logprob = None
    if token.logprob is not None:
        chosen, top = token.logprob
        logprob = TokenLogprob(
            data=token.data,
            logprob=chosen,
            top=tuple(Alternative(data, value) for data, value in top),
        )
    return Piece(
        token=token.token, data=token.data, duration=token.duration, logprob=logprob
    )


def _sampling(options: SamplingOptions) -> Sampling:
    return Sampling(
        seed=options.seed,
        temperature=options.temperature,
        top_k=options.top_k,
        top_p=options.top_p,
        min_p=options.min_p,
        typical_p=options.typical_p,
        repeat_last_n=options.repeat_last_n,
        repeat_penalty=options.repeat_penalty,
        presence_penalty=options.presence_penalty,
        frequency_penalty=options.frequency_penalty,
    )


def _create(store: ModelStore, effect: CreateModel) -> list[str]:
    return store.create(
        effect.name,
        files=dict(effect.files) or None,
        base=effect.base,
        template=effect.template,
        system=effect.system,
        parameters=effect.parameters,
        messages=effect.messages,
        license=effect.license,
        parser=effect.parser,
        remote=(
            (effect.remote_host, effect.remote_model or "")
            if effect.remote_host
            else None
        ),
    )


async def _thread(function: Callable[[], _T]) -> _T:
    return await anyio.to_thread.run_sync(function)


# An absolute path (POSIX, Windows or ~/) as exception texts hold them, up to
# the punctuation that follows one in a sentence.
_MACHINE_PATH = re.compile(
    r"""(?<![\w.~-])(?:~|[A-Za-z]:)?[/\\][^\s'"<>|]*[^\s'"<>|:;,.)\]]"""
)


def _server_failure(what: str, cause: Exception | None = None) -> WorkFailed:
    """A 500 that shows a client no path of this machine (the model store, a home
    or temporary directory): ``what``, then the first clause of ``cause`` (a runner
    puts how it ended there, and what llama.cpp said after), with paths blanked.
    The whole of both goes to the log, under an id the message gives."""
    incident = secrets.token_hex(4)
    logger.error("error %s: %s: %s", incident, what, cause)
    shown = what if cause is None else f"{what}: {str(cause).split('; ', 1)[0]}"
    shown = _MACHINE_PATH.sub("<path>", shown)[:300]
    return WorkFailed(
        status=500, message=f"{shown} (error {incident}; details in the server log)"
    )
