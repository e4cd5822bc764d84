"""A runner process as the server sees it: start it, ask it things, stop it.

``RunnerProcess.start(params, task_group=...)`` spawns ``python -m adapters.runner``
with one end of a socket pair, waits for its ``Hello``, sends ``Load`` and waits for
``Loaded``, all within ``load_timeout``. Three tasks then live in ``task_group`` for
as long as the process does: one reads frames and hands each reply to the request
that waits for it, one writes what the requests queue, one keeps the last lines the
process wrote to stderr (what llama.cpp says when it aborts).

If the process ends without being asked to (an abort, a segfault, the OOM killer),
every request still waiting fails with ``RunnerDied``, which names the signal and
those last lines, ``on_exit`` is called so the pool forgets the model, and nothing
of the process is left in the server: its tasks end, its socket and pipes close.

Written against anyio, so it runs under trio (the server) and asyncio alike.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Final, Protocol

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .errors import LoadFailed, RunnerDied, RunnerError, from_failure
from .protocol import (
    PROTOCOL_VERSION,
    Cancel,
    Credit,
    Detokenize,
    Embed,
    Ended,
    Failed,
    FrameReader,
    Generate,
    Hello,
    Load,
    Loaded,
    Log,
    Message,
    Pieces,
    PromptDone,
    ProtocolError,
    Shutdown,
    TextBytes,
    TokenIds,
    Tokenize,
    Vectors,
    encode,
)
from .values import (
    DoneReason,
    GenerationConstraint,
    LoadParams,
    ModelInfo,
    Sampling,
    TokenPiece,
)

__all__ = ["RemoteGeneration", "RunnerProcess", "TaskSpawner"]

# This package's runner, under the name the package was imported by: `adapters`
# from the source tree, `gateway_core_adapters` when installed.
_RUNNER_MODULE = __package__ or "adapters.runner"

logger = logging.getLogger("adapters.runner")

_READ_SIZE: Final = 256 * 1024
_STDERR_LINES: Final = 20
_EXIT_GRACE: Final = 5.0
"""Seconds a runner asked to shut down may take before it is killed."""
_WRITE_JOIN: Final = 64 * 1024


class TaskSpawner(Protocol):
    """Where a runner's tasks live: an anyio task group or a trio nursery."""

    def start_soon(
        self, func: Callable[[], Coroutine[Any, Any, None]], /
    ) -> object: ...


class _Call:
    """One request waiting for its one reply."""

    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.reply: Message | RunnerError | None = None

    def deliver(self, reply: Message | RunnerError) -> None:
        if self.reply is None:
            self.reply = reply
            self.done.set()


class RunnerProcess:
    """One runner process and its model. See the module docstring."""

    def __init__(
        self,
        params: LoadParams,
        process: anyio.abc.Process,
        stream: anyio.abc.ByteStream,
        on_exit: Callable[[RunnerProcess], None] | None,
    ) -> None:
        self.params = params
        self._process = process
        self._stream = stream
        self._on_exit = on_exit
        self._next_id = 1
        self._calls: dict[int, _Call | RemoteGeneration] = {}
        outbox: tuple[
            MemoryObjectSendStream[bytes], MemoryObjectReceiveStream[bytes]
        ] = anyio.create_memory_object_stream(math.inf)
        self._outbox, self._outgoing = outbox
        self._stderr: deque[str] = deque(maxlen=_STDERR_LINES)
        self._hello = _Call()
        self._loaded = _Call()
        self._exited = anyio.Event()
        self._closing = False
        self.death: str | None = None
        """Why the process ended, once it has (None while it runs)."""
        self.info: ModelInfo | None = None

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def alive(self) -> bool:
        return self.death is None

    @property
    def model_info(self) -> ModelInfo:
        if self.info is None:
            raise RunnerError("the runner has not loaded its model")
        return self.info

    # -- life ------------------------------------------------------------------------

    @classmethod
    async def start(
        cls,
        params: LoadParams,
        *,
        task_group: TaskSpawner,
        load_timeout: float = 300.0,
        compile_timeout: float = 10.0,
        log_level: int = logging.INFO,
        on_exit: Callable[[RunnerProcess], None] | None = None,
        command: Sequence[str] | None = None,
    ) -> RunnerProcess:
        """Spawn a runner and load ``params`` into it; LoadFailed if that fails or
        takes longer than ``load_timeout`` (the process is killed then).
        ``command`` replaces ``python -m <this package>.runner`` (tests start
        other programs that speak the protocol, or misbehave)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            fd = theirs.fileno()
            argv = [
                *(command or [sys.executable, "-m", _RUNNER_MODULE]),
                f"--fd={fd}",
                f"--parent={os.getpid()}",
            ]
            process = await anyio.open_process(
                argv,
                pass_fds=(fd,),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        stream = await anyio.abc.UNIXSocketStream.from_socket(ours)
        runner = cls(params, process, stream, on_exit)
        task_group.start_soon(runner._live)
        try:
            with anyio.fail_after(load_timeout):
                runner.info = await runner._handshake(log_level, compile_timeout)
        except TimeoutError:
            await runner.kill()
            raise LoadFailed(
                f"loading {params.model_file} took longer than {load_timeout:g} s"
            ) from None
        except RunnerError as exc:
            await runner.kill()
            raise LoadFailed(str(exc)) from None
        except BaseException:
            with anyio.CancelScope(shield=True):
                await runner.kill()
            raise
        return runner

    async def close(self) -> None:
        """Ask the runner to stop (its generations end); kill it if it takes
        longer than a few seconds. Safe to call more than once."""
        with anyio.CancelScope(shield=True):
            if self.death is None and not self._closing:
                self._closing = True
                self._send(Shutdown())
            with anyio.move_on_after(_EXIT_GRACE):
                await self._exited.wait()
            if self.death is None:
                await self.kill()

    async def kill(self) -> None:
        """End the process now (SIGKILL) and wait until it is gone."""
        self._closing = True
        with anyio.CancelScope(shield=True):
            if self._process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self._process.kill()
            await self._exited.wait()

    async def _handshake(self, log_level: int, compile_timeout: float) -> ModelInfo:
        hello = await self._wait(self._hello)
        if not isinstance(hello, Hello) or hello.version != PROTOCOL_VERSION:
            raise LoadFailed(f"the runner speaks another protocol: {hello!r}")
        self._send(
            Load(
                params=self.params, log_level=log_level, compile_timeout=compile_timeout
            )
        )
        reply = await self._wait(self._loaded)
        if isinstance(reply, Failed):
            raise LoadFailed(reply.message)
        assert isinstance(reply, Loaded)
        return reply.info

    # -- requests --------------------------------------------------------------------

    async def tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        """Text to tokens, special tokens parsed; BOS/EOS where the vocabulary asks
        for them and ``add_bos`` allows."""
        reply = await self._ask(lambda i: Tokenize(id=i, text=text, add_bos=add_bos))
        assert isinstance(reply, TokenIds)
        return list(reply.tokens)

    async def detokenize(self, tokens: Sequence[int]) -> bytes:
        """Tokens to raw bytes, special tokens rendered; BadRequest for ids outside
        the vocabulary."""
        reply = await self._ask(lambda i: Detokenize(id=i, tokens=tuple(tokens)))
        assert isinstance(reply, TextBytes)
        return reply.data

    async def embed(self, inputs: Sequence[Sequence[int]]) -> Vectors:
        """Pooled vectors, one per input; ContextOverflow names an input that does
        not fit (nothing is truncated)."""
        frozen = tuple(tuple(tokens) for tokens in inputs)
        reply = await self._ask(lambda i: Embed(id=i, inputs=frozen))
        assert isinstance(reply, Vectors)
        return reply

    def generate(
        self,
        prompt: Sequence[int],
        sampling: Sampling,
        constraint: GenerationConstraint | None = None,
        *,
        lookahead: int = 64,
        limit: int = 0,
        logprobs: int | None = None,
        constraint_prefix: Sequence[int] = (),
    ) -> RemoteGeneration:
        """Start generating after ``prompt``; see ``RemoteGeneration``. The runner
        makes at most ``lookahead`` tokens beyond those taken (at least one), and
        at most ``limit`` in all (0: no limit); with ``logprobs``, each token comes
        with its logprob and that many alternatives. ``constraint_prefix``: tokens
        of a prefilled answer the constraint accepts first."""
        self._check_alive()
        request_id = self._new_id()
        generation = RemoteGeneration(self, request_id, len(prompt), max(1, lookahead))
        self._calls[request_id] = generation
        self._send(
            Generate(
                id=request_id,
                prompt=tuple(prompt),
                sampling=sampling,
                constraint=constraint,
                credit=generation.window,
                limit=limit,
                logprobs=logprobs,
                constraint_prefix=tuple(constraint_prefix),
            )
        )
        return generation

    async def _ask(self, make: Callable[[int], Message]) -> Message:
        self._check_alive()
        request_id = self._new_id()
        call = self._calls[request_id] = _Call()
        self._send(make(request_id))
        try:
            return await self._wait(call)
        finally:
            self._calls.pop(request_id, None)

    @staticmethod
    async def _wait(call: _Call) -> Message:
        await call.done.wait()
        reply = call.reply
        if isinstance(reply, RunnerError):
            raise reply
        if isinstance(reply, Failed):
            raise from_failure(reply)
        assert reply is not None
        return reply

    def _new_id(self) -> int:
        request_id = self._next_id
        self._next_id += 1
        return request_id

    def _check_alive(self) -> None:
        if self.death is not None:
            raise RunnerDied(self.death)
        if self._closing:
            raise RunnerError("the runner is shutting down")

    def _send(self, message: Message) -> None:
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._outbox.send_nowait(encode(message))

    def _forget(self, request_id: int) -> None:
        self._calls.pop(request_id, None)

    # -- the process's tasks ---------------------------------------------------------

    async def _live(self) -> None:
        """Read, write and watch until the process is gone, then clean up."""
        try:
            async with anyio.create_task_group() as tg:
                drained = anyio.Event()
                tg.start_soon(self._write)
                tg.start_soon(self._drain_stderr, drained)
                await self._read()
                # The socket is closed: the process is ending, or must.
                with anyio.move_on_after(_EXIT_GRACE):
                    await self._process.wait()
                if self._process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        self._process.kill()
                    await self._process.wait()
                # What it wrote last says why it died: read it to the end.
                with anyio.move_on_after(1.0):
                    await drained.wait()
                tg.cancel_scope.cancel()
        except anyio.get_cancelled_exc_class():
            self._closing = True  # the server is stopping: not a death to report
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await self._ended()

    async def _ended(self) -> None:
        if self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            await self._process.wait()
        self.death = self._describe_exit()
        self._outbox.close()
        self._outgoing.close()
        await self._stream.aclose()
        await self._process.aclose()
        error = RunnerDied(self.death)
        for pending in (self._hello, self._loaded, *self._calls.values()):
            pending.deliver(error)
        self._calls.clear()
        expected = self._closing
        self._exited.set()
        if not expected:
            logger.warning("runner for %s died: %s", self.params.model_file, self.death)
            if self._on_exit is not None:
                self._on_exit(self)

    def _describe_exit(self) -> str:
        code = self._process.returncode
        if code is not None and code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with status {code}"
        said = " | ".join(line for line in self._stderr if line)
        return f"the runner process {how}" + (f"; it said: {said}" if said else "")

    async def _read(self) -> None:
        reader = FrameReader()
        while True:
            try:
                data = await self._stream.receive(_READ_SIZE)
            except (
                anyio.EndOfStream,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
                OSError,
            ):
                return
            reader.feed(data)
            try:
                for message in reader:
                    self._route(message)
            except ProtocolError:
                logger.exception("runner %d sent a bad frame", self.pid)
                with contextlib.suppress(ProcessLookupError):
                    self._process.kill()
                return

    def _route(self, message: Message) -> None:
        match message:
            case Hello():
                self._hello.deliver(message)
            case Loaded():
                self._loaded.deliver(message)
            case Failed(id=0):
                self._loaded.deliver(message)
            case Log(level=level, message=text):
                logger.log(level, "runner %d: %s", self.pid, text)
            case (
                TokenIds(id=request_id)
                | TextBytes(id=request_id)
                | Vectors(id=request_id)
                | PromptDone(id=request_id)
                | Pieces(id=request_id)
                | Ended(id=request_id)
                | Failed(id=request_id)
            ):
                pending = self._calls.get(request_id)
                if pending is not None:  # else: a request that gave up
                    pending.deliver(message)
            case _:
                raise ProtocolError(f"a runner does not send {type(message).__name__}")

    async def _write(self) -> None:
        async for frame in self._outgoing:
            frames = [frame]
            size = len(frame)
            with contextlib.suppress(anyio.WouldBlock):
                while size < _WRITE_JOIN:
                    more = self._outgoing.receive_nowait()
                    frames.append(more)
                    size += len(more)
            try:
                await self._stream.send(b"".join(frames))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                return

    async def _drain_stderr(self, drained: anyio.Event) -> None:
        stderr = self._process.stderr
        partial = b""
        try:
            if stderr is None:
                return
            with contextlib.suppress(anyio.BrokenResourceError, OSError):
                async for chunk in stderr:
                    lines = (partial + chunk).split(b"\n")
                    partial = lines.pop()
                    for line in lines:
                        self._stderr_line(line)
            if partial:
                self._stderr_line(partial)
        finally:
            drained.set()

    def _stderr_line(self, line: bytes) -> None:
        text = line.decode(errors="replace").rstrip()
        self._stderr.append(text)
        logger.warning("runner %d stderr: %s", self.pid, text)


class RemoteGeneration:
    """The tokens after one prompt, made by the runner; ``async with`` and
    ``async for``.

    Ends (StopAsyncIteration) at an end-of-generation token, which is not yielded,
    with ``done_reason`` "stop", or when prompt plus output fill the context, with
    "length". A failure is raised from the pull that would have returned the next
    token. ``aclose()`` (or leaving the ``async with``) cancels it if it has not
    ended; the runner frees its slot within one step.

    Counts: ``prompt_eval_count`` is the prompt tokens decoded now,
    ``prompt_reused_count`` those the slot's cache held already (together, the
    prompt's length); ``eval_count`` is the tokens yielded and ``eval_duration``
    the seconds of llama.cpp work they cost.
    """

    def __init__(
        self, runner: RunnerProcess, request_id: int, prompt_length: int, window: int
    ) -> None:
        self._runner = runner
        self.id = request_id
        self.window = window
        self._pieces: deque[TokenPiece] = deque()
        self._arrived = anyio.Event()
        self._taken_since_grant = 0
        self._ended: DoneReason | None = None
        self._error: RunnerError | None = None
        self._finished = False
        self.done_reason: DoneReason | None = None
        self.prompt_length = prompt_length
        self.prompt_eval_count = 0
        self.prompt_reused_count = 0
        self.prompt_eval_duration = 0.0
        self.eval_count = 0
        self.eval_duration = 0.0
        self.tokens_made: int | None = None
        """Tokens the runner made, once it has said (taken or not)."""
        self._gone = anyio.Event()

    async def __aenter__(self) -> RemoteGeneration:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __aiter__(self) -> RemoteGeneration:
        return self

    async def __anext__(self) -> TokenPiece:
        while True:
            piece = self.next_ready()
            if piece is not None:
                return piece
            if self._error is not None:
                self._finished = True
                raise self._error
            if self._finished or self._ended is not None:
                self._finished = True
                self.done_reason = self._ended
                raise StopAsyncIteration
            self._arrived = anyio.Event()
            await self._arrived.wait()

    def next_ready(self) -> TokenPiece | None:
        """The next token if it has arrived, else None (never waits; the end and
        errors come from ``__anext__``)."""
        if not self._pieces:
            return None
        piece = self._pieces.popleft()
        self.eval_count += 1
        self.eval_duration += piece.duration
        self._taken_since_grant += 1
        if self._ended is None and self._taken_since_grant * 2 >= self.window:
            # Hand the credit back in batches: one message per half window.
            self._runner._send(Credit(id=self.id, tokens=self._taken_since_grant))
            self._taken_since_grant = 0
        return piece

    async def aclose(self) -> None:
        """Stop generating, and wait until the runner has let go of the slot (one
        decode step at most). Safe to call more than once."""
        if self._ended is None and self._error is None and not self._finished:
            self._runner._send(Cancel(id=self.id))
        self._finished = True
        with anyio.CancelScope(shield=True):
            await self._gone.wait()

    def deliver(self, message: Message | RunnerError) -> None:
        match message:
            case PromptDone(evaluated=evaluated, reused=reused, duration=duration):
                self.prompt_eval_count = evaluated
                self.prompt_reused_count = reused
                self.prompt_eval_duration = duration
            case Pieces(tokens=tokens, data=data, durations=durations, logprobs=()):
                self._pieces.extend(map(TokenPiece, tokens, data, durations))
            case Pieces(tokens=tokens, data=data, durations=durations, logprobs=lps):
                self._pieces.extend(map(TokenPiece, tokens, data, durations, lps))
            case Ended(reason=reason, made=made):
                self._ended = "stop" if reason == "cancelled" else reason
                self.tokens_made = made
            case Failed():
                self._error = from_failure(message)
            case RunnerError():
                self._error = message
            case _:
                self._error = RunnerError(f"unexpected reply {message!r}")
        if isinstance(message, (Ended, Failed, RunnerError)):
            self._runner._forget(self.id)
            self._gone.set()
        self._arrived.set()
