"""The runner a request asks for: its context, its slots, and the bounds on both.

Every flow that needs a model (generate and chat, embeddings, Anthropic's token
count) asks for it the same way, through ``acquire``: the context from the request,
the model's parameters or the server's default (clamped to what the model was
trained for), and the slots (``num_parallel``) from the same layers. A runner holds
``context * slots`` KV cells, bounded by ``MAX_CONTEXT_CELLS``.
"""

from __future__ import annotations

from ._config import GatewayConfig
from ._errors import ClientError
from ._models import ModelRecord
from ._options import MAX_CONTEXT_CELLS, LoadOptions, effective_num_ctx
from ._work import AcquireRunner

__all__ = ["acquire"]


def acquire(
    record: ModelRecord,
    load: LoadOptions,
    config: GatewayConfig,
    *,
    keep_alive: float | None,
    embedding: bool = False,
) -> AcquireRunner:
    """The ``AcquireRunner`` for ``record`` loaded with ``load``.

    An embedding runner has one slot: it embeds one request at a time, whole
    batches of inputs in shared decodes, and needs no parallel sequences of its own.

    Raises:
        ClientError: 400 when context times slots is over ``MAX_CONTEXT_CELLS``.
    """
    context = effective_num_ctx(
        load, default=config.default_context_length, train=record.context_length
    )
    slots = 1 if embedding else load.num_parallel or config.default_num_parallel
    if context * slots > MAX_CONTEXT_CELLS:
        raise ClientError(
            400,
            f"num_ctx {context} times num_parallel {slots} is {context * slots}"
            f" cells, over the {MAX_CONTEXT_CELLS} one model may hold",
            param="options",
        )
    return AcquireRunner(
        model=record,
        load=load,
        context_length=context,
        keep_alive=keep_alive,
        embedding=embedding,
        parallel=slots,
    )
