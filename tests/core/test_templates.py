"""Chat templates: rendering as transformers does, inside a sandbox that holds.

Four kinds of test: the templates we meet (the demo model's ChatML, and a
transformers-style template written here that uses the constructs real ones do:
namespace, loop controls, tojson, strftime_now, raise_exception); the sandbox, fed
templates that try to escape or exhaust it; the render budget, fed templates that
try to run long or build large, and real templates over long conversations; and the
capability heuristics.
"""

from __future__ import annotations

import tracemalloc
import warnings
from collections.abc import Iterator, Mapping
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2.sandbox import ImmutableSandboxedEnvironment

from gateway_core._errors import GatewayError
from gateway_core._json import JsonValue
from gateway_core._template_budget import MAX_CHARS, MAX_STEPS
from gateway_core._templates import (
    MAX_SOURCE_CHARS,
    ChatTemplate,
    TemplateError,
    TemplateRaised,
    TemplateTooCostly,
)


def render(source: str, **variables: JsonValue) -> str:
    return ChatTemplate.compile(source).render(messages=[], extra=variables)


# Written for these tests in the style of the templates shipped with open models.
HF_STYLE_TEMPLATE = """\
{{- bos_token }}
{%- set ns = namespace(system='', last_user=-1, previous='') %}
{%- if messages and messages[0].role == 'system' %}
    {%- set ns.system = messages[0].content | trim %}
    {%- set conversation = messages[1:] %}
{%- else %}
    {%- set conversation = messages %}
{%- endif %}
{%- for message in conversation | reverse %}
    {%- if message.role == 'user' %}
        {%- set ns.last_user = (conversation | length) - loop.index %}
        {%- break %}
    {%- endif %}
{%- endfor %}
{{- '<|turn|>system\\n' }}
{{- 'Today is ' + strftime_now('%A, %d %B %Y') + '.\\n' }}
{%- if ns.system %}
    {{- '\\n' + ns.system + '\\n' }}
{%- endif %}
{%- if tools is not none %}
    {{- '\\nFunctions you may call, as JSON schemas:\\n' }}
    {%- for tool in tools %}
        {{- tool | tojson(indent=2) }}
        {{- '\\n' }}
    {%- endfor %}
{%- endif %}
{{- '<|end|>\\n' }}
{%- for message in conversation %}
    {%- if message.role not in ['user', 'assistant', 'tool'] %}
        {{- raise_exception('unsupported role: ' ~ message.role) }}
    {%- endif %}
    {%- if message.role == 'user' and ns.previous == 'user' %}
        {{- raise_exception('two user messages in a row') }}
    {%- endif %}
    {%- set ns.previous = message.role %}
    {{- '<|turn|>' + message.role + '\\n' }}
    {%- set recent = loop.index0 > ns.last_user %}
    {%- if message.role == 'assistant' and recent and message.thinking %}
        {{- '<think>' + message.thinking + '</think>\\n' }}
    {%- endif %}
    {%- if message.content %}
        {{- message.content + '\\n' }}
    {%- endif %}
    {%- for call in message.tool_calls | default([]) %}
        {%- set function = call.function %}
        {{- {'name': function.name, 'arguments': function.arguments} | tojson }}
        {{- '\\n' }}
    {%- endfor %}
    {{- '<|end|>\\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|turn|>assistant' }}
    {%- if reasoning_effort is defined %}
        {{- ' effort=' + reasoning_effort }}
    {%- endif %}
    {{- '\\n' }}
{%- endif %}
"""

WEATHER_TOOL: dict[str, JsonValue] = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Weather <now> & later",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def msg(role: str, content: str, **more: JsonValue) -> dict[str, JsonValue]:
    return {"role": role, "content": content, **more}


@pytest.fixture(scope="module")
def demo() -> ChatTemplate:
    # The demo model's module needs gguf and numpy, which the core_only session
    # leaves out on purpose; the full test session has them and runs these tests.
    demo_model = pytest.importorskip("gateway_core_adapters.demo_model")
    return ChatTemplate.compile(demo_model.CHAT_TEMPLATE)


class TestDemoTemplate:
    def test_plain_conversation(self, demo: ChatTemplate) -> None:
        out = demo.render(messages=[msg("system", "Be nice"), msg("user", "Hi")])
        assert out == (
            "<|im_start|>system\nBe nice<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\n"
        )

    def test_without_generation_prompt(self, demo: ChatTemplate) -> None:
        out = demo.render(
            messages=[msg("user", "Hi"), msg("assistant", "Hello")],
            add_generation_prompt=False,
        )
        assert out == (
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n"
        )

    @pytest.mark.parametrize(
        ("enable_thinking", "ending"),
        [
            (None, "<|im_start|>assistant\n"),
            (True, "<|im_start|>assistant\n"),
            (False, "<|im_start|>assistant\n<think>\n\n</think>\n\n"),
        ],
    )
    def test_thinking_switch(
        self, demo: ChatTemplate, enable_thinking: bool | None, ending: str
    ) -> None:
        out = demo.render(messages=[msg("user", "Hi")], enable_thinking=enable_thinking)
        assert out == "<|im_start|>user\nHi<|im_end|>\n" + ending

    def test_previous_reasoning_is_rendered(self, demo: ChatTemplate) -> None:
        out = demo.render(
            messages=[msg("user", "Hi"), msg("assistant", "Hello", thinking=" hmm \n")],
            add_generation_prompt=False,
        )
        assert "<|im_start|>assistant\n<think>\nhmm\n</think>\n\nHello<|im_end|>" in out

    def test_tools_and_both_shapes_of_tool_call(self, demo: ChatTemplate) -> None:
        messages = [
            msg("user", "Weather in Köln?"),
            msg(
                "assistant",
                "",
                tool_calls=[
                    {"function": {"name": "weather", "arguments": {"city": "Köln"}}},
                    {"function": {"name": "weather", "arguments": '{"city": "Bonn"}'}},
                ],
            ),
            msg("tool", "12°C"),
        ]
        out = demo.render(messages=messages, tools=[WEATHER_TOOL])
        # The schema reaches the model as written: key order kept, nothing escaped.
        assert (
            '<tools>\n{"type": "function", "function": {"name": "weather", '
            '"description": "Weather <now> & later", "parameters": {"type": '
            '"object", "properties": {"city": {"type": "string"}}, "required": '
            '["city"]}}}\n</tools>'
        ) in out
        assert out.startswith("<|im_start|>system\n# Tools\n")
        assert (
            "<|im_start|>assistant\n"
            '<tool_call>\n{"name": "weather", "arguments": {"city": "Köln"}}\n'
            "</tool_call>\n"
            '<tool_call>\n{"name": "weather", "arguments": {"city": "Bonn"}}\n'
            "</tool_call>"
            "<|im_end|>\n<|im_start|>tool\n12°C<|im_end|>\n<|im_start|>assistant\n"
        ) in out

    @pytest.mark.parametrize("tools", [None, []])
    def test_no_tools_means_no_tool_section(
        self, demo: ChatTemplate, tools: list[dict[str, JsonValue]] | None
    ) -> None:
        out = demo.render(messages=[msg("user", "Hi")], tools=tools)
        assert "<tools>" not in out
        assert out.startswith("<|im_start|>user\n")

    def test_capabilities(self, demo: ChatTemplate) -> None:
        assert demo.capabilities == frozenset({"tools", "thinking"})


class TestTransformersStyleTemplate:
    template = ChatTemplate.compile(HF_STYLE_TEMPLATE)

    def test_full_conversation(self) -> None:
        out = self.template.render(
            messages=[
                msg("system", "  Be kind. "),
                msg("user", "Weather in Köln?"),
                msg(
                    "assistant",
                    "",
                    thinking="need the tool",
                    tool_calls=[
                        {"function": {"name": "weather", "arguments": {"city": "Köln"}}}
                    ],
                ),
                msg("tool", "12°C"),
            ],
            tools=[
                {
                    "type": "function",
                    "function": {"name": "weather", "parameters": {"type": "object"}},
                }
            ],
            bos_token="<s>",
            now=1_700_000_000,
            reasoning_effort="high",
        )
        assert out == (
            "<s><|turn|>system\n"
            "Today is Tuesday, 14 November 2023.\n"
            "\nBe kind.\n"
            "\nFunctions you may call, as JSON schemas:\n"
            "{\n"
            '  "type": "function",\n'
            '  "function": {\n'
            '    "name": "weather",\n'
            '    "parameters": {\n'
            '      "type": "object"\n'
            "    }\n"
            "  }\n"
            "}\n"
            "<|end|>\n"
            "<|turn|>user\nWeather in Köln?\n<|end|>\n"
            "<|turn|>assistant\n<think>need the tool</think>\n"
            '{"name": "weather", "arguments": {"city": "Köln"}}\n<|end|>\n'
            "<|turn|>tool\n12°C\n<|end|>\n"
            "<|turn|>assistant effort=high\n"
        )

    def test_reasoning_before_the_last_user_turn_is_dropped(self) -> None:
        out = self.template.render(
            messages=[
                msg("user", "a"),
                msg("assistant", "b", thinking="old"),
                msg("user", "c"),
            ],
            now=0,
        )
        assert "old" not in out
        assert out.startswith("<|turn|>system\nToday is Thursday, 01 January 1970.\n")
        assert out.endswith("<|turn|>user\nc\n<|end|>\n<|turn|>assistant\n")

    def test_raise_exception_carries_the_templates_message(self) -> None:
        with pytest.raises(TemplateRaised, match=r"^two user messages in a row$"):
            self.template.render(messages=[msg("user", "a"), msg("user", "b")], now=0)
        with pytest.raises(TemplateRaised, match=r"^unsupported role: narrator$"):
            self.template.render(messages=[msg("narrator", "a")], now=0)

    def test_the_date_comes_only_from_now(self) -> None:
        with pytest.raises(TemplateError, match="asks for the date"):
            self.template.render(messages=[msg("user", "a")])

    def test_rendering_leaves_the_callers_messages_alone(self) -> None:
        messages = [msg("system", "  s  "), msg("user", "a")]
        before = [dict(m) for m in messages]
        self.template.render(messages=messages, now=0)
        assert messages == before


class TestEnvironment:
    def test_trim_and_lstrip_blocks_as_in_transformers(self) -> None:
        source = "<a>\n    {% if true %}\n  x\n    {% endif %}\n</a>"
        assert render(source) == "<a>\n  x\n</a>"

    def test_loop_controls(self) -> None:
        source = (
            "{% for i in range(9) %}{% if i == 1 %}{% continue %}{% endif %}"
            "{% if i == 4 %}{% break %}{% endif %}{{ i }}{% endfor %}"
        )
        assert render(source) == "023"

    def test_tojson_like_transformers(self) -> None:
        value: JsonValue = {"b": "<é>&'", "a": [1, None, True]}
        assert render("{{ v | tojson }}", v=value) == (
            '{"b": "<é>&\'", "a": [1, null, true]}'
        )
        assert render("{{ v | tojson(ensure_ascii=true) }}", v="é") == '"\\u00e9"'
        assert render("{{ v | tojson(indent=1) }}", v=[1]) == "[\n 1\n]"
        assert render("{{ v | tojson(separators=(',', ':')) }}", v={"a": 1}) == (
            '{"a":1}'
        )
        assert render("{{ v | tojson(sort_keys=true) }}", v={"b": 1, "a": 2}) == (
            '{"a": 2, "b": 1}'
        )

    def test_tojson_of_something_not_json(self) -> None:
        with pytest.raises(TemplateError, match="not JSON serializable"):
            render("{{ {'a': undefined_thing} | tojson }}")

    def test_strftime_now_formats_the_given_time_in_utc(self) -> None:
        template = ChatTemplate.compile("{{ strftime_now('%Y-%m-%d %H:%M:%S') }}")
        assert template.render(messages=[], now=86_399.9) == "1970-01-01 23:59:59"
        assert template.render(messages=[], now=1_700_000_000) == "2023-11-14 22:13:20"

    def test_variables_the_renderer_sets(self) -> None:
        source = (
            "{{ messages | length }} {{ add_generation_prompt }} [{{ bos_token }}]"
            " [{{ eos_token }}] {{ tools is none }} {{ enable_thinking is defined }}"
            " {{ reasoning_effort is defined }}"
        )
        template = ChatTemplate.compile(source)
        assert template.render(messages=[msg("user", "x")]) == (
            "1 True [] [] True False False"
        )
        out = template.render(
            messages=[],
            add_generation_prompt=False,
            bos_token="<s>",
            eos_token="</s>",
            tools=[WEATHER_TOOL],
            enable_thinking=False,
            reasoning_effort="low",
        )
        assert out == "0 False [<s>] [</s>] False True True"

    def test_an_empty_tool_list_is_no_tools(self) -> None:
        template = ChatTemplate.compile("{{ tools is none }}")
        assert template.render(messages=[], tools=[]) == "True"
        assert template.render(messages=[], tools=[WEATHER_TOOL]) == "False"

    def test_enable_thinking_false_is_false_not_absent(self) -> None:
        template = ChatTemplate.compile(
            "{{ 'on' if enable_thinking is not defined or enable_thinking else 'off' }}"
        )
        assert template.render(messages=[]) == "on"
        assert template.render(messages=[], enable_thinking=True) == "on"
        assert template.render(messages=[], enable_thinking=False) == "off"

    def test_extra_variables(self) -> None:
        template = ChatTemplate.compile("{{ persona }}/{{ level }}")
        assert template.render(
            messages=[], extra={"persona": "pirate", "level": 3}
        ) == ("pirate/3")

    def test_extra_may_not_shadow_the_renderers_variables(self) -> None:
        template = ChatTemplate.compile("x")
        with pytest.raises(ValueError, match="'messages'"):
            template.render(messages=[], extra={"messages": []})

    def test_compiled_once_per_source(self) -> None:
        from gateway_core._templates import _compile

        source = "{{ 'cache me' }}"
        assert ChatTemplate.compile(source) == ChatTemplate(source)
        before = _compile.cache_info()
        ChatTemplate.compile(source).render(messages=[])
        ChatTemplate.compile(source).render(messages=[])
        after = _compile.cache_info()
        assert after.misses == before.misses
        assert after.hits > before.hits

    def test_template_error_is_a_gateway_error(self) -> None:
        assert issubclass(TemplateRaised, TemplateError)
        assert issubclass(TemplateError, GatewayError)


class TestCompileErrors:
    @pytest.mark.parametrize(
        "source",
        [
            "{{ .Prompt }}",
            "{{- if .System }}<|system|>{{ .System }}{{ end }}{{ .Prompt }}",
            "{{ range $i, $m := .Messages }}{{ $m.Content }}{{ end }}",
        ],
    )
    def test_go_templates_are_named_as_such(self, source: str) -> None:
        with pytest.raises(TemplateError, match=r"Go template .* only Jinja"):
            ChatTemplate.compile(source)

    def test_syntax_error_names_the_line(self) -> None:
        with pytest.raises(TemplateError, match=r"line 3: .*'endfor'"):
            ChatTemplate.compile("a\nb\n{% for m in messages %}{{ m }}\n")

    def test_deep_nesting_is_a_template_error(self) -> None:
        with pytest.raises(TemplateError, match="nests too deeply"):
            ChatTemplate.compile("{{ " + "(" * 300 + "1" + ")" * 300 + " }}")

    def test_unknown_filter_fails_at_compile_time(self) -> None:
        with pytest.raises(TemplateError, match="No filter named 'no_such'"):
            ChatTemplate.compile("{{ 1 | no_such }}")


class TestRenderErrors:
    @pytest.mark.parametrize(
        ("source", "pattern"),
        [
            ("{{ undefined_function() }}", "'undefined_function' is undefined"),
            ("{{ messages[0].role }}", "list object has no element 0"),
            ("{{ 1 + 'a' }}", "TypeError: unsupported operand"),
            ("{{ 1 / 0 }}", "ZeroDivisionError"),
            (
                "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
                "RecursionError",
            ),
        ],
    )
    def test_a_failing_template_raises_template_error(
        self, source: str, pattern: str
    ) -> None:
        with pytest.raises(TemplateError, match=pattern):
            ChatTemplate.compile(source).render(messages=[])


class TestSandbox:
    @pytest.mark.parametrize(
        "source",
        [
            "{{ ''.__class__.__mro__ }}",
            "{{ ''.__class__ }}",
            "{{ messages.__class__.__subclasses__() }}",
            "{{ raise_exception.__globals__ }}",
            "{{ cycler.__init__.__globals__ }}",
            "{{ self.__init__ }}",
            "{{ '{0.__class__}'.format('') }}",
            "{{ ('a' | attr('__class__')) }}",
            "{{ messages | map(attribute='__class__') | list }}",
        ],
    )
    def test_python_internals_are_out_of_reach(self, source: str) -> None:
        with pytest.raises(TemplateError, match="unsafe"):
            ChatTemplate.compile(source).render(messages=[msg("user", "x")])

    @pytest.mark.parametrize(
        "source",
        [
            "{% set x = [] %}{{ x.append(1) }}",
            "{{ messages.pop() }}",
            "{{ messages[0].update({'role': 'system'}) }}",
            "{{ messages[0].clear() }}",
        ],
    )
    def test_nothing_can_be_mutated(self, source: str) -> None:
        messages = [msg("user", "x")]
        with pytest.raises(TemplateError, match="unsafe"):
            ChatTemplate.compile(source).render(messages=messages)
        assert messages == [msg("user", "x")]

    @pytest.mark.parametrize(
        "source",
        [
            "{% include 'secrets.txt' %}",
            "{% import 'macros.j2' as m %}",
            "{% extends 'base.j2' %}",
            "{% from 'x' import y %}",
        ],
    )
    def test_no_files(self, source: str) -> None:
        with pytest.raises(TemplateError, match="no loader"):
            ChatTemplate.compile(source).render(messages=[])

    @pytest.mark.parametrize(
        "source",
        [
            "{{ 'a' * 10 ** 12 }}",
            "{{ 10 ** 12 * 'a' }}",
            "{{ [0] * 2000000 }}",
            "{{ 7 ** 100000 }}",
            "{% set n = 99999999 %}{{ 'ab' * n }}",
        ],
    )
    def test_one_expression_cannot_exhaust_memory(self, source: str) -> None:
        with pytest.raises(TemplateError, match="refused"):
            ChatTemplate.compile(source).render(messages=[])

    def test_modest_arithmetic_still_works(self) -> None:
        assert render("{{ '=' * 5 }}{{ 2 ** 10 }}{{ [1] * 2 }}{{ 3 * 4 }}") == (
            "=====1024[1, 1]12"
        )
        assert render("{{ 2.5 ** 2 }}{{ (-2) ** 3 }}{{ 1 ** 99999999 }}") == ("6.25-81")

    def test_randomness_is_gone(self) -> None:
        with pytest.raises(TemplateError, match="No filter named 'random'"):
            ChatTemplate.compile("{{ [1, 2] | random }}")
        with pytest.raises(TemplateError, match="'lipsum' is undefined"):
            render("{{ lipsum() }}")

    def test_huge_ranges_are_refused(self) -> None:
        with pytest.raises(TemplateError, match="Range too big"):
            render("{% for i in range(10 ** 9) %}{% endfor %}")


class TestCapabilities:
    @pytest.mark.parametrize(
        ("source", "expected"),
        [
            ("{{ messages }}", set()),
            ("{% if tools %}{{ tools | tojson }}{% endif %}", {"tools"}),
            ("{{ m.tool_calls }}", {"tools"}),
            ("{{ '<tool_call>' }}", {"tools"}),
            ("{{ '<think>' }}…{{ '</think>' }}", {"thinking"}),
            ("{{ '<think>' }} only an opening tag", set()),
            ("{{ prompt }}<fim>{{ suffix }}", {"insert"}),
            ("{% if suffix is defined %}x{% endif %}", {"insert"}),
            ("{{ 'suffix' }} {# suffix #}", set()),
            ("{{ message.suffix }}", set()),
        ],
    )
    def test_from_the_source(self, source: str, expected: set[str]) -> None:
        assert ChatTemplate.compile(source).capabilities == expected


# The Qwen3 chat template, as published with the model (tools, reasoning, tool
# responses): a real template that does per-message work, over two loops. Its long
# lines are wrapped inside tags and strings, which changes nothing it renders.
QWEN3_TEMPLATE = """\
{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\\n\\n' }}
    {%- endif %}
    {{- "# Tools\\n\\nYou may call one or more functions to assist with the user"
        " query.\\n\\nYou are provided with function signatures within"
        " <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with"
        " function name and arguments within <tool_call></tool_call> XML"
        " tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\":"
        " <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user"
            and message.content is string
            and not(message.content.startswith('<tool_response>')
                    and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in content %}
                {%- set reasoning_content = content.split('</think>')[0]
                        .rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}
                {%- set content = content.split('</think>')[-1].lstrip('\\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\\n<think>\\n'
                    + reasoning_content.strip('\\n') + '\\n</think>\\n\\n'
                    + content.lstrip('\\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\\n\\n</think>\\n\\n' }}
    {%- endif %}
{%- endif %}
"""


def agent_conversation(turns: int) -> list[dict[str, JsonValue]]:
    """A long tool-using conversation: question, call, result, answer, repeated."""
    messages: list[dict[str, JsonValue]] = [msg("system", "You are helpful.")]
    while len(messages) < turns:
        n = len(messages)
        messages += [
            msg("user", f"Question {n}: what is the weather in Köln today? " * 3),
            msg(
                "assistant",
                "<think>\nI need the tool.\n</think>\n\nLet me check.",
                tool_calls=[
                    {"function": {"name": "weather", "arguments": {"city": "Köln"}}}
                ],
            ),
            msg("tool", '{"temperature": 12, "sky": "cloudy"}'),
            msg("assistant", "It is 12°C and cloudy in Köln. " * 4),
        ]
    return messages[:turns]


STEPS = f"the template took more than {MAX_STEPS} steps"
CHARS = f"the template built a value of more than {MAX_CHARS} characters"


def too_costly(source: str, **variables: object) -> TemplateTooCostly:
    with pytest.raises(TemplateTooCostly) as caught:
        ChatTemplate.compile(source).render(
            messages=[], extra=cast(Mapping[str, JsonValue], variables)
        )
    return caught.value


class Counting:
    """An iterable that counts the items a render takes from it."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.taken = 0

    def __iter__(self) -> Iterator[int]:
        for item in range(self.length):
            self.taken += 1
            yield item


class TestRenderBudget:
    def test_nested_loops_stop_at_the_step_limit(self) -> None:
        # 60 million iterations unchecked: 1.8 s of event loop.
        bomb = (
            "{% for i in range(100000) %}{% for j in range(600) %}"
            "{% endfor %}{% endfor %}"
        )
        assert str(too_costly(bomb)) == STEPS

    def test_a_bomb_stops_after_bounded_work(self) -> None:
        # Every item a loop takes costs at least a step, so a render that runs out
        # has taken no more items than it had steps.
        items = Counting(10**9)
        too_costly(
            "{% for i in items %}{% for j in items %}{% endfor %}{% endfor %}",
            items=items,
        )
        assert MAX_STEPS // 2 < items.taken <= MAX_STEPS

    @pytest.mark.parametrize(
        "source",
        [
            # every character of a string, and every item of a list or dict
            "{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}",
            "{% for a in xs %}{% for b in xs %}{% endfor %}{% endfor %}",
            "{% for a in d %}{% for k, v in d.items() %}{% endfor %}{% endfor %}",
            "{% for a in xs if a %}{% for b in xs if b %}{% endfor %}{% endfor %}",
            "{% for a in xs %}{% for b in xs %}{% if b < 0 %}{% break %}{% endif %}"
            "{% endfor %}{% endfor %}",
            "{% for a in xs|map('string') %}{{ s|length }}{% endfor %}",
        ],
    )
    def test_loops_over_anything_are_counted(self, source: str) -> None:
        size = 2000
        variables = {
            "s": "x" * size,
            "xs": list(range(1, size + 1)),
            "d": {str(i): i for i in range(size)},
        }
        if "map" in source:
            variables["xs"] = list(range(MAX_STEPS))
        assert str(too_costly(source, **variables)) == STEPS

    @pytest.mark.parametrize(
        ("items", "fits"), [(MAX_STEPS // 2, True), (MAX_STEPS + 1, False)]
    )
    def test_an_iteration_is_a_step(self, items: int, fits: bool) -> None:
        template = ChatTemplate.compile("{% for x in xs %}{% endfor %}done")
        extra: dict[str, JsonValue] = {"xs": [0] * items}
        if fits:
            assert template.render(messages=[], extra=extra) == "done"
        else:
            with pytest.raises(TemplateTooCostly, match=STEPS):
                template.render(messages=[], extra=extra)

    @pytest.mark.parametrize(
        "source",
        [
            "{{ 'a'.ljust(300000000) }}",
            "{{ 'a'.rjust(300000000, '*') }}",
            "{{ 'a'.center(300000000) }}",
            "{{ '1'.zfill(300000000) }}",
            "{{ ('\\t' * 1000000).expandtabs(100) }}",
            "{{ ('x' * 1000000).replace('', 'yyyy') }}",
            "{{ ('x' * 1000000).translate({120: 'yyyyy'}) }}",
            "{{ (1).to_bytes(1000000000, 'big') }}",
            "{{ ','.join(['x' * 1000000] * 10) }}",
            "{{ '{:>300000000}'.format('a') }}",
            "{{ '{:{}}'.format('a', 300000000) }}",
            "{{ '{:.300000000f}'.format(1.5) }}",
            "{{ '{a:>300000000}'.format_map({'a': 1}) }}",
            "{{ '%300000000s' % 'a' }}",
            "{{ '%*s' % (300000000, 'a') }}",
            "{{ '%.300000000f' % 1.5 }}",
            "{{ '%s' % ([s] * 100,) }}",
            "{{ 'a' | center(300000000) }}",
            "{{ ('a\\n' * 100000) | indent(100000) }}",
            "{{ ('a ' * 100000) | wordwrap(1, wrapstring='.' * 100) }}",
            "{{ '%300000000s' | format('a') }}",
            "{{ ('x' * 1000000) | replace('x', 'yyyyy') }}",
            "{{ ([s] * 100) | join }}",
            "{{ [[[1]]] | tojson(indent=100000000) }}",
            "{{ [1] | batch(100000000, 0) | list }}",
            "{{ [1] | slice(100000000) | list }}",
            "{{ ('ā' * 1000000) | list | length }}",
            "{{ ([[0] * 1000] * 1000) | sum(start=[]) | length }}",
            "{{ [s] * 100 }}",
            "{{ 'x' ~ [s] * 100 }}",
            # Markup's methods (after safe) and bytes (after encode) too
            "{{ ('a' | safe).ljust(300000000) }}",
            "{{ ('{:>300000000}' | safe).format('a') }}",
            "{{ ('x' | safe).join([s] * 10) }}",
            "{{ 'x'.encode().ljust(300000000) }}",
            "{{ ','.encode().join([s.encode()] * 10) }}",
            "{{ s.encode().replace(''.encode(), 'yyyy'.encode()) }}",
            "{{ '%300000000s'.encode() % 'a'.encode() }}",
            # calls that print, or compare, their arguments
            "{{ raise_exception([s] * 100) }}",
            "{{ ('x' | safe).escape([s] * 100) }}",
            "{% for i in range(2) %}{{ loop.changed([s] * 100) }}{% endfor %}",
            "{% set ns = namespace(s='ab') %}"
            "{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
            "{% set ns = namespace(s='ab') %}"
            "{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
            "{% set ns = namespace(s=[1]) %}"
            "{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
        ],
    )
    def test_no_value_may_outgrow_the_limit(self, source: str) -> None:
        # s is a million characters: a hundred of it is 100 million.
        assert str(too_costly(source, s="x" * 1_000_000)) == CHARS

    @pytest.mark.parametrize(
        "source",
        [
            # Nested lists that share themselves: small to build, huge to print,
            # compare or hash.
            "{% set ns = namespace(t=[1]) %}"
            "{% for i in range(60) %}{% set ns.t = [ns.t, ns.t] %}{% endfor %}"
            "{{ ns.t }}",
            "{% set ns = namespace(t=(1,), u=(1,)) %}"
            "{% for i in range(60) %}{% set ns.t = (ns.t, ns.t) %}"
            "{% set ns.u = (ns.u, ns.u) %}{% endfor %}{{ ns.t == ns.u }}",
            "{% set ns = namespace(t=(1,)) %}"
            "{% for i in range(60) %}{% set ns.t = (ns.t, ns.t) %}{% endfor %}"
            "{{ {ns.t: 1} }}",
        ],
    )
    def test_shared_structures_are_measured_whole(self, source: str) -> None:
        assert str(too_costly(source)) in (STEPS, CHARS)

    def test_big_numbers_are_refused(self) -> None:
        bomb = (
            "{% set ns = namespace(x=3) %}"
            "{% for i in range(64) %}{% set ns.x = ns.x * ns.x %}{% endfor %}"
        )
        assert "number of more than 4096 bits" in str(too_costly(bomb))

    @pytest.mark.parametrize(
        "source",
        [
            "{% for i in range(300) %}{{ s }}{% endfor %}",
            "{% macro m() %}{% for i in range(300) %}{{ s }}{% endfor %}{% endmacro %}"
            "{{ m() | length }}",
            "{% set x %}{% for i in range(300) %}{{ s }}{% endfor %}{% endset %}"
            "{{ x | length }}",
        ],
    )
    def test_written_text_is_bounded(self, source: str) -> None:
        # 300 times 20,000 characters is 6 million: refused as it is written, or
        # before a macro or block joins its text.
        error = str(too_costly(source, s="x" * 20_000))
        assert error in (CHARS, f"the template wrote more than {MAX_CHARS} characters")

    def test_many_small_writes_are_bounded_too(self) -> None:
        error = too_costly(
            "{% for i in range(100000) %}{% for j in range(2) %}"
            "{{ 'abcdefghij' * 3 }}{% endfor %}{% endfor %}"
        )
        assert str(error) in (
            STEPS,
            f"the template wrote more than {MAX_CHARS} characters",
        )

    def test_work_on_long_values_is_charged_by_length(self) -> None:
        # Each of these is one operation on a 100,000-character string, repeated: a
        # step apiece would allow seconds of copying and searching.
        for body in (
            "{% set t = s[1:] %}",
            "{% if s == u %}{% endif %}",
            "{% if 'y' in s %}{% endif %}",
            "{% set n = s.count('y') %}",
            "{% set t = s | upper %}",
            "{% set t = s ~ '' %}",
        ):
            source = "{% for i in range(10000) %}" + body + "{% endfor %}"
            assert str(too_costly(source, s="x" * 100_000, u="x" * 100_000)) == STEPS

    def test_recursion_ends_as_a_template_error(self) -> None:
        # Python's recursion limit ends it, long before the budget would.
        source = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"
        with pytest.raises(TemplateError, match="RecursionError"):
            ChatTemplate.compile(source).render(messages=[])

    @pytest.mark.parametrize(
        "source",
        [
            # Each call makes two: 2 ** 40 calls, each within the recursion limit.
            "{% macro f(n) %}{% if n < 40 %}{{ f(n + 1) }}{{ f(n + 1) }}{% endif %}"
            "{% endmacro %}{{ f(0) }}",
            "{% for x in [[1, 1]] recursive %}{{ loop([x, x]) }}{% endfor %}",
            "{% for x in [1] recursive %}{% if loop.depth < 40 %}"
            "{{ loop([x, x]) }}{% endif %}{% endfor %}",
        ],
    )
    def test_branching_recursion_is_counted(self, source: str) -> None:
        with pytest.raises(TemplateError):
            ChatTemplate.compile(source).render(messages=[])

    def test_the_budget_is_per_render(self) -> None:
        # Each render takes most of a budget: they would fail if they shared one.
        template = ChatTemplate.compile("{% for x in xs %}{% endfor %}done")
        extra: dict[str, JsonValue] = {"xs": [0] * (MAX_STEPS * 3 // 4)}
        for _ in range(3):
            assert template.render(messages=[], extra=extra) == "done"

    def test_filters_are_not_run_while_compiling(self) -> None:
        # Jinja would fold a filter of constants into the compiled code, running
        # it outside any render and its budget (6 s and a gigabyte for this one).
        tracemalloc.start()
        try:
            template = ChatTemplate.compile("{{ 'a' | center(300000000) }}")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 10_000_000
        with pytest.raises(TemplateTooCostly, match=CHARS):
            template.render(messages=[])

    def test_a_template_too_long_to_compile(self) -> None:
        with pytest.raises(TemplateTooCostly, match=f"longer than {MAX_SOURCE_CHARS}"):
            ChatTemplate.compile("x" * (MAX_SOURCE_CHARS + 1))
        assert ChatTemplate.compile("x" * MAX_SOURCE_CHARS).render(messages=[])

    def test_over_budget_is_a_template_error(self) -> None:
        assert issubclass(TemplateTooCostly, TemplateError)

    @given(width=st.integers(min_value=0, max_value=10**12))
    @settings(max_examples=40, deadline=None)
    def test_padding_renders_or_is_refused(self, width: int) -> None:
        template = ChatTemplate.compile(
            "{{ 'a'.ljust(w) }}|{{ '%*s' % (w, 'a') }}|{{ '{:>{}}'.format('a', w) }}"
        )
        extra: dict[str, JsonValue] = {"w": width}
        if 3 * max(width, 1) + 2 <= MAX_CHARS:
            assert (
                len(template.render(messages=[], extra=extra)) == 3 * max(width, 1) + 2
            )
        else:
            with pytest.raises(TemplateTooCostly):
                template.render(messages=[], extra=extra)


class TestLongConversations:
    """Real templates over long conversations stay well within the budget."""

    TOOLS: list[dict[str, JsonValue]] = [WEATHER_TOOL] * 3

    def test_qwen3_over_a_thousand_messages(self) -> None:
        messages = agent_conversation(1000)
        out = ChatTemplate.compile(QWEN3_TEMPLATE).render(
            messages=messages, tools=self.TOOLS
        )
        assert out.startswith("<|im_start|>system\nYou are helpful.\n\n# Tools")
        assert out.count("<|im_start|>") == out.count("<|im_end|>") + 1
        calls = sum(1 for m in messages if m.get("tool_calls"))
        assert out.count("<tool_call>") == calls + 2  # and two in the instructions
        assert out.endswith("<|im_start|>assistant\n")

    def test_a_transformers_style_template_over_a_thousand_messages(self) -> None:
        messages = [m for m in agent_conversation(1000) if m["role"] != "tool"]
        out = ChatTemplate.compile(HF_STYLE_TEMPLATE).render(
            messages=messages, tools=self.TOOLS, now=0
        )
        assert out.count("<|turn|>") == len(messages) + 1

    def test_a_prompt_near_the_longest_allowed(self) -> None:
        # One message of a million characters, copied by the template's + chain.
        content = "word " * 200_000
        out = ChatTemplate.compile(QWEN3_TEMPLATE).render(
            messages=[msg("user", content)], tools=self.TOOLS
        )
        assert content in out


# -- the instrumentation changes nothing a template renders ------------------------

# A plain sandbox configured as ours, to render the same templates without a budget.
PLAIN = ImmutableSandboxedEnvironment(
    trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
)
VARIABLES: dict[str, JsonValue] = {
    "xs": [3, 1, 2],
    "s": "Hello, World",
    "n": 7,
    "d": {"a": 1, "b": "two", "c": [1, 2]},
    "nothing": None,
}

names = st.sampled_from(["xs", "s", "n", "d", "nothing", "missing", "x"])
literals = st.sampled_from(
    ["1", "'a'", "[1, 2]", "(1, 'b')", "{'k': 1}", "none", "true"]
)
atoms = names | literals


def _expressions(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pairs = st.tuples(inner, inner)
    return st.one_of(
        pairs.map(lambda p: f"({p[0]} ~ {p[1]})"),
        pairs.map(lambda p: f"({p[0]} + {p[1]})"),
        pairs.map(lambda p: f"({p[0]} == {p[1]})"),
        pairs.map(lambda p: f"({p[0]} in {p[1]})"),
        pairs.map(lambda p: f"({p[0]} and {p[1]})"),
        pairs.map(lambda p: f"({p[0]} if {p[1]} else 0)"),
        inner.map(lambda e: f"{e}.a"),
        inner.map(lambda e: f"{e}[0]"),
        # Jinja folds a slice of a literal differently from how it runs it.
        names.map(lambda e: f"{e}[1:]"),
        inner.map(lambda e: f"({e} | length)"),
        inner.map(lambda e: f"({e} | string | upper)"),
        inner.map(lambda e: f"({e} | default('dflt'))"),
        inner.map(lambda e: f"({e} | join('-'))"),
        inner.map(lambda e: f"({e} is string)"),
        inner.map(lambda e: f"{{'key': {e}}}"),
        inner.map(lambda e: f"[{e}, {e}]"),
        inner.map(lambda e: f"({e}).items()"),
        inner.map(lambda e: f"(({e}) ~ '').split(',')"),
    )


expressions = st.recursive(atoms, _expressions, max_leaves=6)


def _statements(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        expressions.map(lambda e: "{{ " + e + " }}"),
        st.tuples(expressions, inner).map(
            lambda p: (
                "{% for x in "
                + p[0]
                + " %}[{{ loop.index }}]"
                + p[1]
                + "{% else %}empty{% endfor %}"
            )
        ),
        st.tuples(expressions, inner, inner).map(
            lambda p: (
                "{% if "
                + p[0]
                + " %}"
                + p[1]
                + "{% elif n %}"
                + p[2]
                + "{% else %}no{% endif %}"
            )
        ),
        expressions.map(lambda e: "{% set x = " + e + " %}{{ x }}"),
        inner.map(
            lambda b: "{% macro m(x) %}<{{ x }}>" + b + "{% endmacro %}{{ m(n) }}"
        ),
        inner.map(lambda b: "{% filter upper %}" + b + "{% endfilter %}"),
        st.lists(inner, max_size=3).map("".join),
    )


templates = st.recursive(
    expressions.map(lambda e: "{{ " + e + " }}"), _statements, max_leaves=5
)


def _plain_render(source: str) -> str | None:
    try:
        return PLAIN.from_string(source).render(**VARIABLES)
    except Exception:  # whatever it is, the instrumented render must fail too
        return None


@given(source=templates)
@settings(max_examples=300, deadline=None)
def test_the_budget_changes_nothing_a_template_renders(source: str) -> None:
    """Instrumented and plain, the same template renders the same text, or fails
    in both."""
    with warnings.catch_warnings():
        # Python warns while compiling what Jinja generates for, say, 1[1:].
        warnings.simplefilter("ignore", SyntaxWarning)
        expected = _plain_render(source)
        try:
            got: str | None = ChatTemplate.compile(source).render(
                messages=[], extra=VARIABLES
            )
        except TemplateError:
            got = None
    assert got == expected
