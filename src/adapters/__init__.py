"""I/O adapters for gateway_core: the trio/h11 HTTP server and its command line.

This is the only package that touches sockets, threads, clocks and the environment.
"""

from __future__ import annotations
