"""OpenAI's Responses API (``/v1/responses``): request items translated into the
canonical request (``_input``), the Response object and its event stream
(``_render``), the stored responses behind ``previous_response_id`` (``_store``),
and the flows (``_flows``). Nothing is imported here, so that ``_work`` can take
the store effects (``_effects``) without a cycle."""
