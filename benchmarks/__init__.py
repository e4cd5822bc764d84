"""The gateway's benchmark suite: ``python -m benchmarks`` or ``nox -s bench``.

Speed lives here, never in timed unit tests. Each benchmark module exposes a ``run``
function returning a flat-ish mapping of figures; ``__main__`` runs the chosen ones
and writes them, with a description of the machine, to one JSON file.
"""
