"""Pulling and pushing models: Ollama's registry protocol, as pure values and flows.

A registry speaks the OCI distribution API with Ollama's media types. What is pure
lives here: where a model name points (``_reference``), how a blob is split into
ranged parts and upload chunks (``_transfer``), and the pull and push flows with
their progress events (``_flows``). The HTTP client and the files are the adapter's
(``adapters.registry``). This package imports nothing at its top so that ``_work``
can import ``_reference`` without a cycle.
"""
