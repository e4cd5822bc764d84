"""The runner process: one model served over one socket (``python -m adapters.runner``).

Threads, each with one job:

- the main thread reads frames and dispatches them; it never waits on llama.cpp,
  so a ``Cancel`` or ``Credit`` is seen while the model works;
- the engine's thread runs the decode loop (``engine``) of a generation runner; an
  embedding runner has a worker that embeds one request at a time instead;
- a worker tokenizes and detokenizes (a long text must not hold up the reader);
- compile workers build constraints (``constraint``), off the decode loop: a slow
  schema delays only its own request, and its deadline (``compile_timeout``) fails
  it with a 400 while the compile finishes in the background (and is cached);
- the writer sends what the others queue, joining frames that are ready into one
  write.

Every worker is a daemon thread: a compile that runs on past shutdown must not keep
the process alive, and ``main`` ends the process with ``os._exit`` once the engine
has stopped and the writer has flushed.

The process ends on ``Shutdown``, at the end of its input (the server closed the
socket or died), or with its parent: a watchdog thread sees the parent process
gone (the runner has been handed to another parent) within a second, even while
llama.cpp is in the middle of a C call. (Not ``PR_SET_PDEATHSIG``: Linux sends
that signal when the parent *thread* ends, and the server spawns runners from
worker threads that come and go.)
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Final

from . import embedding, llama
from .constraint import (
    Compiled,
    Compiler,
    ConstraintFailed,
    ConstraintState,
    UnsupportedConstraint,
    Vocabulary,
    build_vocabulary,
)
from .engine import Engine, Job
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
    ProtocolError,
    Shutdown,
    TextBytes,
    TokenIds,
    Tokenize,
    encode,
)
from .values import ModelInfo

__all__ = ["main"]

logger = logging.getLogger("adapters.runner")

_READ_SIZE: Final = 256 * 1024
_COMPILE_WORKERS: Final = 2
_WATCH_INTERVAL: Final = 0.5


class _Writer:
    """Sends queued frames from a thread of its own, joined into one write when
    several are ready. ``send`` may be called from any thread."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._frames: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)
        self._thread.start()
        self.broken = False

    def send(self, message: Message) -> None:
        self._frames.put(encode(message))

    def close(self, timeout: float = 5.0) -> None:
        """Flush what is queued (for at most ``timeout`` seconds), then stop."""
        self._frames.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            frame = self._frames.get()
            if frame is None:
                return
            frames = [frame]
            with contextlib.suppress(queue.Empty):
                while len(frames) < 256:
                    more = self._frames.get_nowait()
                    if more is None:
                        self._write(frames)
                        return
                    frames.append(more)
            self._write(frames)

    def _write(self, frames: list[bytes]) -> None:
        if self.broken:
            return
        try:
            self._sock.sendall(b"".join(frames))
        except OSError:
            # The server is gone; the reader sees the end of input and stops us.
            self.broken = True


class _Workers:
    """Daemon threads running queued calls, in order of arrival."""

    def __init__(self, name: str, count: int) -> None:
        self._calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        for number in range(count):
            threading.Thread(
                target=self._run, name=f"{name}-{number}", daemon=True
            ).start()

    def submit(self, call: Callable[[], None]) -> None:
        self._calls.put(call)

    def _run(self) -> None:
        while True:
            call = self._calls.get()
            try:
                call()
            except Exception:
                logger.exception("a runner worker failed")


class _LogForwarder(logging.Handler):
    """The runner's log records, as ``Log`` messages to the server."""

    def __init__(self, send: Callable[[Message], None], level: int) -> None:
        super().__init__(level)
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._send(Log(level=record.levelno, message=self.format(record)))
        except Exception:
            self.handleError(record)


class Runner:
    """Serves one model over ``sock``; ``serve()`` returns when it should exit."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._writer = _Writer(sock)
        self.send = self._writer.send
        self._model: llama.Model | None = None
        self._engine: Engine | None = None
        self._engine_thread: threading.Thread | None = None
        self._embedder: _Workers | None = None
        self._tokens = _Workers("tokens", 1)
        self._compilers = _Workers("compile", _COMPILE_WORKERS)
        self._compiler: Compiler | None = None
        self._compile_timeout = 0.0
        # Generations whose constraint is being compiled, by id: each is either
        # submitted when its compile ends or failed by its deadline, not both.
        self._compiling: dict[int, Generate] = {}
        self._compiling_lock = threading.Lock()

    def serve(self) -> None:
        self.send(Hello(version=PROTOCOL_VERSION, pid=os.getpid()))
        reader = FrameReader()
        try:
            while True:
                data = self._sock.recv(_READ_SIZE)
                if not data:
                    return
                reader.feed(data)
                for message in reader:
                    if isinstance(message, Shutdown):
                        return
                    self._dispatch(message)
        except ProtocolError:
            logger.exception("the server sent a frame this runner cannot read")
        except OSError:
            pass  # the server is gone
        finally:
            self._stop()

    # -- requests ----------------------------------------------------------------

    def _dispatch(self, message: Message) -> None:
        match message:
            case Load():
                self._load(message)
            case Tokenize() | Detokenize():
                model = self._loaded(message.id)
                self._tokens.submit(lambda: self.send(_tokenize(model, message)))
            case Generate():
                self._generate(message)
            case Credit(id=request_id, tokens=tokens):
                if self._engine is not None:
                    self._engine.grant(request_id, tokens)
            case Cancel(id=request_id):
                self._cancel(request_id)
            case Embed():
                self._embed(message)
            case _:
                raise ProtocolError(f"a runner does not take {type(message).__name__}")

    def _load(self, message: Load) -> None:
        if self._model is not None:
            raise ProtocolError("the model is loaded already")
        logging.getLogger("adapters").setLevel(message.log_level)
        params = message.params
        self._compile_timeout = message.compile_timeout
        started = time.perf_counter()
        try:
            model = llama.load(params)
        except llama.LoadFailed as exc:
            self.send(Failed(id=0, kind="runner", message=str(exc)))
            return
        self._model = model
        if params.embedding:
            self._embedder = _Workers("embed", 1)
        else:
            self._engine = Engine(model, send=self.send)
            self._engine_thread = threading.Thread(
                target=_run_engine, args=(self._engine,), name="engine", daemon=True
            )
            self._engine_thread.start()
            self._compiler = Compiler(
                lambda: _vocabulary(model), special_token=_special_lookup(model)
            )
        self.send(Loaded(info=_info(model, time.perf_counter() - started)))

    def _embed(self, message: Embed) -> None:
        model = self._loaded(message.id)
        if self._embedder is None:
            self.send(_bad(message.id, "this runner generates; it cannot embed"))
            return
        self._embedder.submit(lambda: self.send(embedding.embed_inputs(model, message)))

    def _generate(self, message: Generate) -> None:
        model = self._loaded(message.id)
        if self._engine is None or self._compiler is None:
            self.send(_bad(message.id, "this runner embeds; it cannot generate"))
            return
        if not message.prompt:
            self.send(_bad(message.id, "the prompt must have at least one token"))
            return
        if not all(0 <= token < model.n_vocab for token in message.prompt):
            self.send(_bad(message.id, f"token ids must be in 0..{model.n_vocab - 1}"))
            return
        if message.constraint is None:
            self._engine.submit(_job(message, None))
            return
        compiled = self._compiler.cached(message.constraint)
        if compiled is not None:
            self._submit(message, compiled)
            return
        with self._compiling_lock:
            self._compiling[message.id] = message
        timer = threading.Timer(self._compile_timeout, self._compile_expired, [message])
        timer.daemon = True
        timer.start()
        self._compilers.submit(lambda: self._compile(message, timer))

    def _compile(self, message: Generate, timer: threading.Timer) -> None:
        assert self._compiler is not None
        assert self._engine is not None
        assert message.constraint is not None
        failure: Failed | None = None
        try:
            compiled = self._compiler.compile(message.constraint)
        except UnsupportedConstraint as exc:
            failure = Failed(id=message.id, kind="unsupported_schema", message=str(exc))
        except Exception as exc:  # a bug: fail this request, never hang it
            logger.exception("compiling a constraint failed")
            failure = Failed(id=message.id, kind="runner", message=repr(exc))
        if not self._claim(message.id):
            return  # its deadline or a cancel answered it already
        timer.cancel()
        if failure is not None:
            self.send(failure)
        else:
            self._submit(message, compiled)

    def _submit(self, message: Generate, compiled: Compiled) -> None:
        """Start the constraint, past the prefilled answer if there is one."""
        assert self._engine is not None
        state = compiled.start()
        try:
            for token in message.constraint_prefix:
                state.accept(token)
        except ConstraintFailed as exc:
            self.send(
                _bad(message.id, f"the prefilled answer does not fit the format: {exc}")
            )
            return
        self._engine.submit(_job(message, state))

    def _compile_expired(self, message: Generate) -> None:
        if self._claim(message.id):
            self.send(
                Failed(
                    id=message.id,
                    kind="compile_timeout",
                    message="compiling the constraint took longer than"
                    f" {self._compile_timeout:g} s",
                )
            )

    def _claim(self, request_id: int) -> bool:
        """Take a compiling generation out of the waiting list; False when its
        deadline or a cancel took it first."""
        with self._compiling_lock:
            return self._compiling.pop(request_id, None) is not None

    def _cancel(self, request_id: int) -> None:
        if self._claim(request_id):
            self.send(Ended(id=request_id, reason="cancelled"))
        elif self._engine is not None:
            self._engine.cancel(request_id)

    def _loaded(self, request_id: int) -> llama.Model:
        if self._model is None:
            raise ProtocolError(f"request {request_id} before the model was loaded")
        return self._model

    def _stop(self) -> None:
        """Stop the engine (its requests end as cancelled) and flush the writer.
        The model is not freed: the process exits next, and a compile worker may
        still be reading the vocabulary."""
        if self._engine is not None and self._engine_thread is not None:
            self._engine.stop()
            self._engine_thread.join()
        self._writer.close()


def _run_engine(engine: Engine) -> None:
    """The engine's thread. A bug in the loop must not leave requests hanging on a
    runner that looks alive: the process exits, and the server fails them."""
    try:
        engine.run()
    except BaseException:
        logger.critical("the decode loop failed", exc_info=True)
        logging.shutdown()
        os._exit(70)


def _job(message: Generate, state: ConstraintState | None) -> Job:
    return Job(
        id=message.id,
        prompt=list(message.prompt),
        sampling=message.sampling,
        constraint=state,
        credit=message.credit,
        limit=message.limit,
        logprobs=message.logprobs,
    )


def _tokenize(model: llama.Model, message: Tokenize | Detokenize) -> Message:
    if isinstance(message, Tokenize):
        ids = model.tokenize(message.text.encode(), add_bos=message.add_bos)
        return TokenIds(id=message.id, tokens=tuple(ids))
    if not all(0 <= token < model.n_vocab for token in message.tokens):
        return _bad(message.id, f"token ids must be in 0..{model.n_vocab - 1}")
    piece = model.pieces.piece
    return TextBytes(id=message.id, data=b"".join(map(piece, message.tokens)))


def _bad(request_id: int, message: str) -> Failed:
    return Failed(id=request_id, kind="bad_request", message=message)


def _info(model: llama.Model, seconds: float) -> ModelInfo:
    return ModelInfo(
        n_vocab=model.n_vocab,
        n_ctx=model.n_ctx,
        n_ctx_train=model.n_ctx_train,
        n_batch=model.n_batch,
        slots=model.params.slots,
        bos=model.bos,
        eos=model.eos,
        add_bos=model.add_bos,
        add_eos=model.add_eos,
        embedding_length=model.embedding_length,
        load_seconds=seconds,
    )


def _vocabulary(model: llama.Model) -> Vocabulary:
    def plain(data: bytes) -> list[int]:
        return model.tokenize(data, add_bos=False)

    return build_vocabulary(model.token_table(), bos=model.bos, tokenize=plain)


def _special_lookup(model: llama.Model) -> Callable[[str], int | None]:
    """Whether a text is one control token of the model, and which."""

    def lookup(text: str) -> int | None:
        tokens = model.tokenize(text.encode(), add_bos=False)
        if len(tokens) != 1:
            return None
        attributes = model.token_table().attributes[tokens[0]]
        return tokens[0] if attributes & llama.CONTROL else None

    return lookup


def _die_with_parent(parent: int) -> None:
    """Exit as soon as the process that started this one is gone."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_WATCH_INTERVAL)
        os._exit(1)

    threading.Thread(target=watch, name="watchdog", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapters.runner")
    parser.add_argument("--fd", type=int, required=True, help="the socket to serve")
    parser.add_argument(
        "--parent", type=int, default=0, help="exit when this process is gone"
    )
    args = parser.parse_args(argv)
    if args.parent:
        _die_with_parent(args.parent)
    # Stray writes to standard output (a C library's printf) must not land anywhere
    # that matters: send them where the logs go.
    os.dup2(2, 1)
    # The server handles the signals of a terminal; the runner ends with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=args.fd)
    runner = Runner(sock)
    root = logging.getLogger("adapters")
    root.addHandler(_LogForwarder(runner.send, logging.DEBUG))
    root.propagate = False
    runner.serve()
    sock.close()
    os._exit(0)
