"""Modelfiles as Ollama writes them: every instruction, quoting, and a precise error
naming the line for anything else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_core._modelfile import ModelfileError, parse_modelfile

EVERY_INSTRUCTION = '''
# A comment, then every instruction, in mixed case.
FROM ./tiny.gguf
parameter temperature 0.5
PARAMETER num_ctx 4096
PARAMETER stop "<|im_end|>"
PARAMETER stop """
"""
PARAMETER use_mmap false
TEMPLATE """{{ .System }}
{{ .Prompt }}"""
SYSTEM You are terse.
MESSAGE user Hello there
MESSAGE assistant """Hi!
How can I help?"""
LICENSE """MIT
text"""
License Apache-2.0
'''


def test_every_instruction_becomes_its_create_field() -> None:
    found = parse_modelfile(EVERY_INSTRUCTION)
    assert found.source == "./tiny.gguf"
    assert found.from_file
    assert found.create_request("mine", files={"tiny.gguf": "sha256:" + "a" * 64}) == {
        "model": "mine",
        "files": {"tiny.gguf": "sha256:" + "a" * 64},
        "parameters": {
            "temperature": 0.5,
            "num_ctx": 4096,
            "stop": ["<|im_end|>", "\n"],
            "use_mmap": False,
        },
        "template": "{{ .System }}\n{{ .Prompt }}",
        "system": "You are terse.",
        "messages": [
            {"role": "user", "content": "Hello there"},
            {"role": "assistant", "content": "Hi!\nHow can I help?"},
        ],
        "license": ["MIT\ntext", "Apache-2.0"],
    }


def test_from_a_model_name_is_a_base_model() -> None:
    found = parse_modelfile('FROM llama3.2:1b\nSYSTEM "Be brief."\n')
    assert not found.from_file
    assert found.create_request("mine") == {
        "model": "mine",
        "from": "llama3.2:1b",
        "system": "Be brief.",
    }


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "no FROM line"),
        ("SYSTEM hi", "no FROM line"),
        ("FROM a\nFROM b", "line 2: FROM may appear only once"),
        ("FROM a\nADAPTER ./lora.gguf", "line 2: ADAPTER is not supported"),
        ("FROM a\nQUANTIZE q4", "line 2: unknown instruction 'QUANTIZE'"),
        ("FROM a\nPARAMETER temperature warm", 'line 2: parameter "temperature"'),
        ("FROM a\nPARAMETER mirostat_x 1", 'line 2: unknown parameter "mirostat_x"'),
        ("FROM a\nPARAMETER num_ctx", "line 2: PARAMETER needs a name and a value"),
        ("FROM a\nMESSAGE bot hi", "line 2: MESSAGE role must be"),
        ('FROM a\nSYSTEM """never closed', 'line 2: """ is never closed'),
        ('FROM a\nSYSTEM """x""" y', 'line 2: text after the closing """'),
        ("FROM", "line 1: FROM needs a value"),
    ],
)
def test_what_ollama_would_not_read_is_an_error_naming_the_line(
    text: str, words: str
) -> None:
    with pytest.raises(ModelfileError) as error:
        parse_modelfile(text)
    assert words in str(error.value)


@given(st.text(max_size=300))
def test_any_text_is_read_or_refused_with_a_modelfile_error(text: str) -> None:
    try:
        found = parse_modelfile(text)
    except ModelfileError:
        return  # refused, as it should be: nothing else may escape
    assert found.source  # whatever was read starts from something
