"""Fixtures for the runner's tests: the demo model, loaded in this process (engine
tests) or served by a runner process (client tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway_core_adapters.demo_model import EOS_TOKEN, IM_START_TOKEN, write_demo_model

CHAT = f"{IM_START_TOKEN}user\nhello{EOS_TOKEN}\n{IM_START_TOKEN}assistant\n"


@pytest.fixture(scope="session")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("runner-model") / "demo.gguf"
    write_demo_model(path)
    return path


def write_aborting_model(source: Path, path: Path) -> Path:
    """A copy of the demo model that makes llama.cpp abort the process while it
    loads (a model with no blocks trips an assertion, SIGABRT), as some broken or
    hostile GGUF files do."""
    import shutil

    import gguf

    shutil.copy(source, path)
    reader = gguf.GGUFReader(path, "r+")
    field = reader.fields["llama.block_count"]
    field.parts[-1][0] = 0
    del reader  # flushes the memory map
    return path
