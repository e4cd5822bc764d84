# ruff: noqa: E501 (templates and prompts are data; their lines stay whole)
"""Chat templates in the published formats of the model families the gateway reads.

Written for these tests from each family's documented prompt format (gpt-oss's
harmony guide, the Qwen3-Coder, DeepSeek V3.1, Mistral v11 (Magistral/Devstral)
and Llama 3.1 model cards): short, but they render a conversation the way the
family's own templates do: system and tools first, tool calls in the family's call
syntax with their arguments, tool results in its result syntax, thinking kept or
dropped as the family requires, and the generation prompt. Each also carries the
text the family's fingerprint in ``gateway_core._families`` looks for.

``HISTORY`` is one conversation with a tool call and its result, in the native
API's shape; ``RENDERED`` holds, per family, what its template must make of it.
The adapters' tests write a random-weight GGUF per family from these
(``FAMILY_TOKENS`` are the special tokens each needs).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

__all__ = [
    "CAPABILITIES",
    "FAMILY_TOKENS",
    "HISTORY",
    "RENDERED",
    "TEMPLATES",
    "WEATHER_TOOL",
]

WEATHER_TOOL: Final[dict[str, Any]] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}

HISTORY: Final[list[dict[str, Any]]] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": "",
        "thinking": "Need the tool.",
        "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
        ],
    },
    {"role": "tool", "tool_name": "get_weather", "content": '{"temp": 21}'},
]

# Tool calls may come OpenAI-shaped (arguments a JSON string) or Ollama-shaped (an
# object); `tojson` is never joined to a string with `+` (it may return Markup, which
# would HTML-escape the other side).
_ARGUMENTS = r"""
{%- if function.arguments is string -%}
    {{- function.arguments -}}
{%- else -%}
    {{- function.arguments | tojson -}}
{%- endif -%}
"""

HARMONY = (
    r"""
{%- for message in messages if message.role == 'system' -%}
    {{- '<|start|>system<|message|>' + message.content + '<|end|>' -}}
{%- endfor -%}
{%- if tools -%}
    {{- '<|start|>developer<|message|># Tools\n\n## functions\n\nnamespace functions {\n' -}}
    {%- for tool in tools -%}
        {{- '\n// ' + (tool.function.description or '') + '\ntype '
            + tool.function.name + ' = (_: ' -}}
        {{- tool.function.parameters | tojson -}}
        {{- ') => any;\n' -}}
    {%- endfor -%}
    {{- '\n} // namespace functions<|end|>' -}}
{%- endif -%}
{%- for message in messages -%}
    {%- if message.role == 'user' -%}
        {{- '<|start|>user<|message|>' + message.content + '<|end|>' -}}
    {%- elif message.role == 'assistant' and message.tool_calls -%}
        {%- if message.thinking -%}
            {{- '<|start|>assistant<|channel|>analysis<|message|>'
                + message.thinking + '<|end|>' -}}
        {%- endif -%}
        {%- for call in message.tool_calls -%}
            {%- set function = call.function -%}
            {{- '<|start|>assistant<|channel|>commentary to=functions.'
                + function.name + ' <|constrain|>json<|message|>' -}}
"""
    + _ARGUMENTS
    + r"""
            {{- '<|call|>' -}}
        {%- endfor -%}
    {%- elif message.role == 'assistant' -%}
        {#- Earlier answers keep their final channel only: analysis is dropped. -#}
        {{- '<|start|>assistant<|channel|>final<|message|>'
            + (message.content or '') + '<|end|>' -}}
    {%- elif message.role == 'tool' -%}
        {{- '<|start|>functions.' + (message.tool_name or message.name or '')
            + ' to=assistant<|channel|>commentary<|message|>'
            + message.content + '<|end|>' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|start|>assistant' -}}
{%- endif -%}
"""
).strip()

QWEN3_CODER = r"""
{%- if messages and messages[0].role == 'system' or tools -%}
    {{- '<|im_start|>system\n' -}}
    {%- if messages and messages[0].role == 'system' -%}
        {{- messages[0].content + '\n\n' -}}
    {%- endif -%}
    {%- if tools -%}
        {{- '# Tools\n\n<tools>' -}}
        {%- for tool in tools -%}
            {{- '\n<function>\n<name>' + tool.function.name + '</name>\n<parameters>' -}}
            {%- for name in tool.function.parameters.properties -%}
                {{- '\n<parameter>\n<name>' + name + '</name>\n</parameter>' -}}
            {%- endfor -%}
            {{- '\n</parameters>\n</function>' -}}
        {%- endfor -%}
        {{- '\n</tools>\n\nCall a function as:\n<tool_call>\n<function=NAME>\n'
            + '<parameter=NAME>\nVALUE\n</parameter>\n</function>\n</tool_call>' -}}
    {%- endif -%}
    {{- '<|im_end|>\n' -}}
{%- endif -%}
{%- for message in messages -%}
    {%- if message.role == 'system' -%}
    {%- elif message.role == 'assistant' -%}
        {{- '<|im_start|>assistant\n' + (message.content or '') -}}
        {%- for call in message.tool_calls or [] -%}
            {{- '\n<tool_call>\n<function=' + call.function.name + '>\n' -}}
            {%- for name, value in call.function.arguments.items() -%}
                {{- '<parameter=' + name + '>\n' -}}
                {%- if value is string -%}
                    {{- value -}}
                {%- else -%}
                    {{- value | tojson -}}
                {%- endif -%}
                {{- '\n</parameter>\n' -}}
            {%- endfor -%}
            {{- '</function>\n</tool_call>' -}}
        {%- endfor -%}
        {{- '<|im_end|>\n' -}}
    {%- elif message.role == 'tool' -%}
        {{- '<|im_start|>user\n<tool_response>\n' + message.content
            + '\n</tool_response><|im_end|>\n' -}}
    {%- else -%}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|im_start|>assistant\n' -}}
{%- endif -%}
""".strip()

# DeepSeek writes its markers with fullwidth bars and U+2581 for spaces.
_DS = {
    "bos": "<\uff5cbegin\u2581of\u2581sentence\uff5c>",
    "eos": "<\uff5cend\u2581of\u2581sentence\uff5c>",
    "user": "<\uff5cUser\uff5c>",
    "assistant": "<\uff5cAssistant\uff5c>",
    "calls_begin": "<\uff5ctool\u2581calls\u2581begin\uff5c>",
    "calls_end": "<\uff5ctool\u2581calls\u2581end\uff5c>",
    "call_begin": "<\uff5ctool\u2581call\u2581begin\uff5c>",
    "call_end": "<\uff5ctool\u2581call\u2581end\uff5c>",
    "sep": "<\uff5ctool\u2581sep\uff5c>",
    "output_begin": "<\uff5ctool\u2581output\u2581begin\uff5c>",
    "output_end": "<\uff5ctool\u2581output\u2581end\uff5c>",
}

DEEPSEEK = (
    (
        r"""
{{- bos_token -}}
{%- for message in messages if message.role == 'system' -%}
    {{- message.content -}}
{%- endfor -%}
{%- if tools -%}
    {{- '\n\n## Tools\nYou may call these functions:\n' -}}
    {%- for tool in tools -%}
        {{- '\n### ' + tool.function.name + '\nParameters: ' -}}
        {{- tool.function.parameters | tojson -}}
    {%- endfor -%}
    {{- '\n\nTo call one, write: @CALLS_BEGIN@@CALL_BEGIN@function@SEP@NAME\n```json\n'
        + 'ARGUMENTS\n```@CALL_END@@CALLS_END@' -}}
{%- endif -%}
{%- for message in messages -%}
    {%- if message.role == 'user' -%}
        {{- '@USER@' + message.content -}}
    {%- elif message.role == 'assistant' -%}
        {{- '@ASSISTANT@</think>' + (message.content or '') -}}
        {%- if message.tool_calls -%}
            {{- '@CALLS_BEGIN@' -}}
            {%- for call in message.tool_calls -%}
                {%- set function = call.function -%}
                {{- '@CALL_BEGIN@function@SEP@' + function.name + '\n```json\n' -}}
"""
        + _ARGUMENTS
        + r"""
                {{- '\n```@CALL_END@' -}}
            {%- endfor -%}
            {{- '@CALLS_END@' -}}
        {%- endif -%}
        {{- '@EOS@' -}}
    {%- elif message.role == 'tool' -%}
        {{- '@OUTPUT_BEGIN@' + message.content + '@OUTPUT_END@' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '@ASSISTANT@<think>' -}}
{%- endif -%}
"""
    )
    .strip()
    .replace("@CALLS_BEGIN@", _DS["calls_begin"])
    .replace("@CALLS_END@", _DS["calls_end"])
    .replace("@CALL_BEGIN@", _DS["call_begin"])
    .replace("@CALL_END@", _DS["call_end"])
    .replace("@SEP@", _DS["sep"])
    .replace("@USER@", _DS["user"])
    .replace("@ASSISTANT@", _DS["assistant"])
    .replace("@EOS@", _DS["eos"])
    .replace("@OUTPUT_BEGIN@", _DS["output_begin"])
    .replace("@OUTPUT_END@", _DS["output_end"])
)

MISTRAL_V11 = (
    r"""
{{- bos_token -}}
{%- for message in messages if message.role == 'system' -%}
    {{- '[SYSTEM_PROMPT]' + message.content + '[/SYSTEM_PROMPT]' -}}
{%- endfor -%}
{%- if tools -%}
    {{- '[AVAILABLE_TOOLS]' -}}
    {{- tools | tojson -}}
    {{- '[/AVAILABLE_TOOLS]' -}}
{%- endif -%}
{%- for message in messages -%}
    {%- if message.role == 'user' -%}
        {{- '[INST]' + message.content + '[/INST]' -}}
    {%- elif message.role == 'assistant' -%}
        {{- message.content or '' -}}
        {%- for call in message.tool_calls or [] -%}
            {%- set function = call.function -%}
            {{- '[TOOL_CALLS]' + function.name + '[ARGS]' -}}
"""
    + _ARGUMENTS
    + r"""
        {%- endfor -%}
        {{- eos_token -}}
    {%- elif message.role == 'tool' -%}
        {{- '[TOOL_RESULTS]' + message.content + '[/TOOL_RESULTS]' -}}
    {%- endif -%}
{%- endfor -%}
"""
).strip()

LLAMA3 = (
    r"""
{{- bos_token -}}
{{- '<|start_header_id|>system<|end_header_id|>\n\n' -}}
{%- if tools -%}
    {{- 'Environment: ipython\n\n' -}}
{%- endif -%}
{%- for message in messages if message.role == 'system' -%}
    {{- message.content -}}
{%- endfor -%}
{{- '<|eot_id|>' -}}
{%- for message in messages -%}
    {%- if message.role == 'user' -%}
        {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
        {%- if tools and loop.first or tools and loop.index0 == 1 -%}
            {{- 'Answer with a function call as {"name": NAME, "parameters": '
                + 'ARGUMENTS} if one helps. Functions:\n' -}}
            {%- for tool in tools -%}
                {{- tool | tojson -}}
                {{- '\n\n' -}}
            {%- endfor -%}
        {%- endif -%}
        {{- message.content + '<|eot_id|>' -}}
    {%- elif message.role == 'assistant' and message.tool_calls -%}
        {%- for call in message.tool_calls -%}
            {%- set function = call.function -%}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n<|python_tag|>'
                + '{"name": "' + function.name + '", "parameters": ' -}}
"""
    + _ARGUMENTS
    + r"""
            {{- '}<|eom_id|>' -}}
        {%- endfor -%}
    {%- elif message.role == 'assistant' -%}
        {{- '<|start_header_id|>assistant<|end_header_id|>\n\n'
            + (message.content or '') + '<|eot_id|>' -}}
    {%- elif message.role == 'tool' -%}
        {{- '<|start_header_id|>ipython<|end_header_id|>\n\n'
            + message.content + '<|eot_id|>' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
{%- endif -%}
"""
).strip()

TEMPLATES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "harmony": HARMONY,
        "qwen3-coder": QWEN3_CODER,
        "deepseek": DEEPSEEK,
        "mistral-v11": MISTRAL_V11,
        "llama3": LLAMA3,
    }
)

# (token, is_control) in vocabulary order; the first is BOS, the second EOS. Control
# tokens are the turn structure; the rest are written as text by the model.
FAMILY_TOKENS: Final[Mapping[str, tuple[tuple[str, bool], ...]]] = MappingProxyType(
    {
        "harmony": (
            ("<|startoftext|>", True),
            ("<|return|>", True),
            ("<|start|>", True),
            ("<|end|>", True),
            ("<|message|>", True),
            ("<|channel|>", True),
            ("<|constrain|>", True),
            ("<|call|>", True),
        ),
        "qwen3-coder": (
            ("<|endoftext|>", True),
            ("<|im_end|>", True),
            ("<|im_start|>", True),
            ("<tool_call>", False),
            ("</tool_call>", False),
        ),
        "deepseek": (
            (_DS["bos"], True),
            (_DS["eos"], True),
            (_DS["user"], False),
            (_DS["assistant"], False),
            (_DS["calls_begin"], False),
            (_DS["calls_end"], False),
            (_DS["call_begin"], False),
            (_DS["call_end"], False),
            (_DS["sep"], False),
            (_DS["output_begin"], False),
            (_DS["output_end"], False),
            ("<think>", False),
            ("</think>", False),
        ),
        "mistral-v11": (
            ("<s>", True),
            ("</s>", True),
            ("[INST]", True),
            ("[/INST]", True),
            ("[SYSTEM_PROMPT]", True),
            ("[/SYSTEM_PROMPT]", True),
            ("[AVAILABLE_TOOLS]", True),
            ("[/AVAILABLE_TOOLS]", True),
            ("[TOOL_RESULTS]", True),
            ("[/TOOL_RESULTS]", True),
            ("[TOOL_CALLS]", True),
            ("[ARGS]", True),
            ("[THINK]", True),
            ("[/THINK]", True),
        ),
        "llama3": (
            ("<|begin_of_text|>", True),
            ("<|eot_id|>", True),
            ("<|start_header_id|>", True),
            ("<|end_header_id|>", True),
            ("<|eom_id|>", True),
            ("<|python_tag|>", True),
        ),
    }
)

# What /api/show lists beyond "completion" for a model with each template.
CAPABILITIES: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "harmony": frozenset({"tools", "thinking"}),
        "qwen3-coder": frozenset({"tools"}),
        "deepseek": frozenset({"tools", "thinking"}),
        "mistral-v11": frozenset({"tools"}),
        "llama3": frozenset({"tools"}),
    }
)

# Frozen from one render, then read line by line against each family's published
# format: a change to how the core hands messages to templates shows here.
RENDERED: Final[Mapping[str, str]] = MappingProxyType(
    {
        "harmony": (
            "<|start|>system<|message|>Be brief.<|end|>"
            "<|start|>developer<|message|># Tools\n"
            "\n"
            "## functions\n"
            "\n"
            "namespace functions {\n"
            "\n"
            "// The weather in a city.\n"
            'type get_weather = (_: {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}) => any;\n'
            "\n"
            "} // namespace functions<|end|>"
            "<|start|>user<|message|>Weather in Paris?<|end|>"
            "<|start|>assistant<|channel|>analysis<|message|>Need the tool.<|end|>"
            '<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Paris"}<|call|>'
            '<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>{"temp": 21}<|end|>'
            "<|start|>assistant"
        ),
        "qwen3-coder": (
            "<|im_start|>system\n"
            "Be brief.\n"
            "\n"
            "# Tools\n"
            "\n"
            "<tools>\n"
            "<function>\n"
            "<name>get_weather</name>\n"
            "<parameters>\n"
            "<parameter>\n"
            "<name>city</name>\n"
            "</parameter>\n"
            "</parameters>\n"
            "</function>\n"
            "</tools>\n"
            "\n"
            "Call a function as:\n"
            "<tool_call>\n"
            "<function=NAME>\n"
            "<parameter=NAME>\n"
            "VALUE\n"
            "</parameter>\n"
            "</function>\n"
            "</tool_call><|im_end|>\n"
            "<|im_start|>user\n"
            "Weather in Paris?<|im_end|>\n"
            "<|im_start|>assistant\n"
            "\n"
            "<tool_call>\n"
            "<function=get_weather>\n"
            "<parameter=city>\n"
            "Paris\n"
            "</parameter>\n"
            "</function>\n"
            "</tool_call><|im_end|>\n"
            "<|im_start|>user\n"
            "<tool_response>\n"
            '{"temp": 21}\n'
            "</tool_response><|im_end|>\n"
            "<|im_start|>assistant\n"
        ),
        "deepseek": (
            "Be brief.\n"
            "\n"
            "## Tools\n"
            "You may call these functions:\n"
            "\n"
            "### get_weather\n"
            'Parameters: {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}\n'
            "\n"
            "To call one, write: <\uff5ctool\u2581calls\u2581begin\uff5c><\uff5ctool\u2581call\u2581begin\uff5c>function<\uff5ctool\u2581sep\uff5c>NAME\n"
            "```json\n"
            "ARGUMENTS\n"
            "```<\uff5ctool\u2581call\u2581end\uff5c><\uff5ctool\u2581calls\u2581end\uff5c>"
            "<\uff5cUser\uff5c>Weather in Paris?<\uff5cAssistant\uff5c></think><\uff5ctool\u2581calls\u2581begin\uff5c><\uff5ctool\u2581call\u2581begin\uff5c>function<\uff5ctool\u2581sep\uff5c>get_weather\n"
            "```json\n"
            '{"city": "Paris"}\n'
            "```<\uff5ctool\u2581call\u2581end\uff5c><\uff5ctool\u2581calls\u2581end\uff5c><\uff5cend\u2581of\u2581sentence\uff5c>"
            '<\uff5ctool\u2581output\u2581begin\uff5c>{"temp": 21}<\uff5ctool\u2581output\u2581end\uff5c>'
            "<\uff5cAssistant\uff5c><think>"
        ),
        "mistral-v11": (
            '[SYSTEM_PROMPT]Be brief.[/SYSTEM_PROMPT][AVAILABLE_TOOLS][{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city.", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}][/AVAILABLE_TOOLS]'
            "[INST]Weather in Paris?[/INST]"
            '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_RESULTS]{"temp": 21}[/TOOL_RESULTS]'
        ),
        "llama3": (
            "<|start_header_id|>system<|end_header_id|>\n"
            "\n"
            "Environment: ipython\n"
            "\n"
            "Be brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n"
            "\n"
            'Answer with a function call as {"name": NAME, "parameters": ARGUMENTS} if one helps. Functions:\n'
            '{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city.", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}\n'
            "\n"
            "Weather in Paris?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n"
            "\n"
            '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}<|eom_id|><|start_header_id|>ipython<|end_header_id|>\n'
            "\n"
            '{"temp": 21}<|eot_id|>'
            "<|start_header_id|>assistant<|end_header_id|>\n"
            "\n"
        ),
    }
)
