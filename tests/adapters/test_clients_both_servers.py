"""The official clients' tests, run against both servers from one fixture.

The tests are the project's own, imported from the modules that define them (the
ollama, openai and anthropic clients: chat, streaming, tools, format, embeddings,
model management, errors, disconnects), not copies. pytest collects a test function
wherever a module holds it, and resolves its fixtures in the module that runs it:
so here ``served`` is this module's, parametrized over the trio server and the ASGI
app under uvicorn, and the module-level fixtures the tests build on it (openai's
``client``, anthropic's ``claude``, the embed tests' ``small``) are imported along.

Left out are the tests that do not go through ``served`` (they start their own
trio server), the one that holds a lease through the trio server's own pool from
the test's loop (a pool on uvicorn's loop cannot be driven from trio's), and the
hundred-seed structured-output run (it tests the engine, and costs half a minute).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import ollama
import pytest
import trio

from gateway_core_adapters.settings import ServerSettings

from .asgi_live import LiveAsgi, start_live_asgi
from .live import LiveServer
from .ollama_setup import install, ollama_server
from .test_anthropic_client import (
    claude,
    test_a_bad_request_is_the_clients_bad_request_error,
    test_a_forced_tool_call_is_a_tool_use_block,
    test_a_message_parses_into_the_clients_types,
    test_a_stream_is_accepted_by_the_clients_accumulator,
    test_a_tool_result_continues_the_conversation,
    test_an_unknown_model_is_the_clients_not_found_error,
    test_count_tokens_counts_with_the_models_tokenizer,
    test_raw_stream_events_come_in_anthropics_order,
)
from .test_ollama_client import (
    test_a_client_that_disconnects_stops_generation_at_once,
    test_a_corrupt_blob_is_refused_at_create_time,
    test_a_new_load_time_option_reloads_the_model,
    test_chat_streaming_and_not,
    test_client_errors_have_ollamas_statuses,
    test_generate_streaming_and_not,
    test_ps_shows_the_loaded_model_and_keep_alive_0_unloads_it,
    test_stopping_the_server_unloads_every_model,
    test_token_ids_outside_the_vocabulary_are_a_400,
    test_two_concurrent_requests_are_both_served_in_full,
)
from .test_ollama_embed import (
    small,
    test_a_batch_gives_the_same_vectors_as_one_at_a_time,
    test_a_long_input_is_truncated_to_the_context,
    test_concurrent_embeds_and_chats_share_the_model_file,
    test_embedding_errors_in_ollamas_words,
    test_the_legacy_endpoint_returns_the_raw_vector,
    test_vectors_have_unit_norm_and_dimensions_cut_them,
)
from .test_ollama_structured import (
    test_an_unenforceable_schema_is_refused_not_ignored,
    test_json_format_gives_a_json_object,
    test_streaming_chat_with_tools_sends_tool_calls_with_ids,
    test_structured_answers_validate_a_few_seeds_per_combination,
)
from .test_openai_client import (
    client,
    test_a_bad_request_is_a_bad_request_error_naming_the_field,
    test_a_json_schema_answer_validates,
    test_a_required_tool_call_comes_back_with_an_id_and_json_arguments,
    test_a_text_completion_streamed_and_whole,
    test_an_unknown_model_is_not_found,
    test_chat_streamed_and_whole_say_the_same,
    test_embeddings_as_floats_and_base64_are_equal,
    test_models_are_listed_and_retrieved,
)

# Collected here too; listed so that linters see them used.
REUSED = (
    claude,
    client,
    small,
    test_a_bad_request_is_a_bad_request_error_naming_the_field,
    test_a_bad_request_is_the_clients_bad_request_error,
    test_a_batch_gives_the_same_vectors_as_one_at_a_time,
    test_a_client_that_disconnects_stops_generation_at_once,
    test_a_corrupt_blob_is_refused_at_create_time,
    test_a_forced_tool_call_is_a_tool_use_block,
    test_a_json_schema_answer_validates,
    test_a_long_input_is_truncated_to_the_context,
    test_a_message_parses_into_the_clients_types,
    test_a_new_load_time_option_reloads_the_model,
    test_a_required_tool_call_comes_back_with_an_id_and_json_arguments,
    test_a_stream_is_accepted_by_the_clients_accumulator,
    test_a_text_completion_streamed_and_whole,
    test_a_tool_result_continues_the_conversation,
    test_an_unenforceable_schema_is_refused_not_ignored,
    test_an_unknown_model_is_not_found,
    test_an_unknown_model_is_the_clients_not_found_error,
    test_chat_streamed_and_whole_say_the_same,
    test_chat_streaming_and_not,
    test_client_errors_have_ollamas_statuses,
    test_concurrent_embeds_and_chats_share_the_model_file,
    test_count_tokens_counts_with_the_models_tokenizer,
    test_embedding_errors_in_ollamas_words,
    test_embeddings_as_floats_and_base64_are_equal,
    test_generate_streaming_and_not,
    test_json_format_gives_a_json_object,
    test_models_are_listed_and_retrieved,
    test_ps_shows_the_loaded_model_and_keep_alive_0_unloads_it,
    test_raw_stream_events_come_in_anthropics_order,
    test_stopping_the_server_unloads_every_model,
    test_streaming_chat_with_tools_sends_tool_calls_with_ids,
    test_structured_answers_validate_a_few_seeds_per_combination,
    test_the_legacy_endpoint_returns_the_raw_vector,
    test_token_ids_outside_the_vocabulary_are_a_400,
    test_two_concurrent_requests_are_both_served_in_full,
    test_vectors_have_unit_norm_and_dimensions_cut_them,
)


@pytest.fixture(params=["trio", "uvicorn"])
async def served(
    request: pytest.FixtureRequest,
    nursery: trio.Nursery,
    clients: list[ollama.Client],
    tmp_path: Path,
    gguf: Path,
) -> AsyncIterator[tuple[LiveServer | LiveAsgi, ollama.Client]]:
    """A server with the tiny model installed as ``tiny``: the trio server, or
    the ASGI app under uvicorn, with the same settings."""
    live: LiveServer | LiveAsgi
    if request.param == "trio":
        live, client = await ollama_server(nursery, clients, tmp_path / "models")
    else:
        settings = ServerSettings(host="127.0.0.1", port=0, models=tmp_path / "models")
        live = await start_live_asgi(nursery, settings)
        client = ollama.Client(host=f"http://127.0.0.1:{live.port}")
        clients.append(client)
    await install(client, "tiny", gguf)
    yield live, client
    live.server.shutdown()
