"""Chat templates: rendering as transformers does, inside a sandbox that holds.

Three kinds of test: the templates we meet (the demo model's ChatML, and a
transformers-style template written here that uses the constructs real ones do:
namespace, loop controls, tojson, strftime_now, raise_exception); the sandbox, fed
templates that try to escape or exhaust it; and the capability heuristics.
"""

from __future__ import annotations

import pytest

from gateway_core._errors import GatewayError
from gateway_core._json import JsonValue
from gateway_core._templates import ChatTemplate, TemplateError, TemplateRaised


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
    demo_model = pytest.importorskip("adapters.demo_model")
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
