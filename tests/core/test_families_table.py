"""The family table: which family a model is, from fragments of each family's
published chat template, and what each family grants and constrains."""

# DeepSeek's tokens are spelled with fullwidth bars on purpose.
# ruff: noqa: RUF001

from __future__ import annotations

import dataclasses

import pytest

from gateway_core._catalog import capabilities
from gateway_core._families import (
    FAMILIES,
    ParserSetup,
    family_for,
    family_named,
    harmony_aliases,
    harmony_name,
)
from gateway_core._models import ModelDetails

from .helpers import model_record

# What each family's own template holds, cut down to the lines that tell them apart
# (the published templates: gpt-oss, Qwen3-Coder, DeepSeek R1, Mistral Small 3.2 /
# Magistral, Mistral Small 3.1, Qwen3, Hermes 2 Pro, Llama 3.1).
TEMPLATES = {
    "harmony": (
        "{{- '<|start|>assistant<|channel|>' + channel + '<|message|>' }}"
        "{{- ' to=functions.' + name + '<|constrain|>json' }} tools"
    ),
    "qwen3-coder": (
        "{%- if tools %}<tools>{% endif %}<tool_call>\n<function={{ name }}>\n"
        "<parameter={{ key }}>\n{{ value }}\n</parameter>\n</function>\n</tool_call>"
    ),
    "deepseek": (
        "{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type']"
        " + '<｜tool▁sep｜>' + tool['function']['name'] }}<think>\n</think>"
    ),
    "mistral-v11": (
        "[AVAILABLE_TOOLS]{{ tools|tojson }}[/AVAILABLE_TOOLS]"
        "{{- '[TOOL_CALLS]' + call.name + '[ARGS]' + call.arguments }}"
        "[THINK]{{ thinking }}[/THINK]"
    ),
    "mistral": "{%- for t in tools %}[AVAILABLE_TOOLS] [{% endfor %}[TOOL_CALLS] [",
    "qwen3": (
        "{%- if tools %}<tools></tools>{% endif %}<tool_call>\n"
        "{{ call | tojson }}\n</tool_call><think>\n\n</think>"
    ),
    "hermes": "{%- if tools %}<tools></tools>{% endif %}<tool_call>{{ call }}",
    "llama3": (
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
        "{%- if builtin_tools %}<|python_tag|>{% endif %}{{ tools }}"
    ),
    "functools": "{% if tools %}Call as functools[{...}]{% endif %}",
    "tool-call-prefix": "{% if tools %}Call as [TOOL_CALL] [{...}]{% endif %}",
    "action-json": "{% if tools %}Thought: ...\nAction: ```json{% endif %}",
    "json": "{% if tools %}{{ tools | tojson }}{% endif %}",
    "plain": "{{ messages }}<think></think>",
}


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_each_family_is_told_by_its_template(name: str) -> None:
    assert family_for(TEMPLATES[name]).name == name


def test_every_family_is_in_the_table_and_named() -> None:
    assert set(TEMPLATES) == set(FAMILIES)
    for name, family in FAMILIES.items():
        assert family_named(name) is family
        assert family.name == name
    assert family_named("nope") is None


def test_the_architecture_tells_when_the_template_does_not() -> None:
    assert family_for(None, "gpt-oss").name == "harmony"
    assert family_for("{{ tools }}", "qwen3").name == "qwen3"
    assert family_for("{{ tools }}", "llama").name == "json"
    assert family_for(None).name == "plain"
    # The template wins over the architecture.
    assert family_for(TEMPLATES["hermes"], "gpt-oss").name == "hermes"


def test_capabilities_grow_with_the_family() -> None:
    harmony = model_record("oss", TEMPLATES["harmony"])
    assert capabilities(harmony) == ("completion", "tools", "thinking")
    magistral = model_record("magistral", TEMPLATES["mistral-v11"])
    assert capabilities(magistral) == ("completion", "tools", "thinking")
    mistral = model_record("mistral", TEMPLATES["mistral"])
    assert capabilities(mistral) == ("completion", "tools")
    # By architecture, only with a template to render with.
    bare = model_record("oss", "{{ messages }}")
    oss = dataclasses.replace(bare, details=ModelDetails(family="gpt-oss"))
    assert capabilities(oss) == ("completion", "tools", "thinking")


def test_the_lazy_constraint_is_offered_only_where_it_fits() -> None:
    lazy = {name: family.lazy_markers for name, family in FAMILIES.items()}
    assert lazy == {
        "harmony": None,
        "qwen3-coder": None,
        "deepseek": None,
        "mistral-v11": None,
        "mistral": ("[TOOL_CALLS]", ""),
        "qwen3": ("<tool_call>", "</tool_call>"),
        "hermes": ("<tool_call>", "</tool_call>"),
        "llama3": ("<|python_tag|>", ""),
        # The template's own prefix, whole: "functools" alone is a Python module
        # a model may write about, and a ```json block is not always a call.
        "functools": ("functools[", "]"),
        "tool-call-prefix": ("[TOOL_CALL]", ""),
        "action-json": ("Action: ```json", "```"),
        # Bare calls at the start only: not every ```json block is a call.
        "json": ("", ""),
        "plain": None,
    }


def test_opens_thinking_with_the_familys_markers() -> None:
    assert FAMILIES["deepseek"].opens_thinking("<｜Assistant｜><think>\n")
    assert FAMILIES["mistral-v11"].opens_thinking("[INST]x[/INST][THINK]")
    assert not FAMILIES["mistral-v11"].opens_thinking("<think>\n")
    assert not FAMILIES["harmony"].opens_thinking("<|start|>assistant")


def test_a_family_without_calls_or_tools_passes_text_through() -> None:
    setup = ParserSetup(thinking=False, prompt="", tools=None, id_seed="s")
    for family in FAMILIES.values():
        if family.machine is not None:
            continue
        parser = family.parser(setup)
        text = "<tool_call>{}</tool_call> [TOOL_CALLS] <think>x</think>"
        assert "".join(s.text for s in [*parser.feed(text), *parser.finish()]) == text  # type: ignore[union-attr]


def test_harmony_names_are_ollamas() -> None:
    assert harmony_name("get_weather") == "get_weather"
    assert harmony_name("get-weather.now") == "get_weather_now"
    assert harmony_name("3d print!") == "_3d_print"
    assert harmony_name("??") == "unnamed"
    assert harmony_name("browser.search") == "browser.search"
    assert harmony_name("météo") == "météo"
    assert harmony_aliases(["a-b", "a.b", "a_b", "ok"]) == {
        "a_b": "a-b",
        "a_b_2": "a.b",
        "a_b_3": "a_b",
    }
