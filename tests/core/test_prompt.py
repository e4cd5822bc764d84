"""Prompt assembly: which messages a chat template sees, and how history is cut.

The merge rules are Ollama's (shared/reference/ollama-api.md §1.4 item 12 and §1.5);
the cases below spell each rule out with the smallest conversation that shows it.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_core._errors import ClientError
from gateway_core._json import JsonValue
from gateway_core._prompt import chat_messages, generate_messages, truncated_histories
from gateway_core._templates import ChatTemplate


def msg(role: str, content: str) -> dict[str, JsonValue]:
    return {"role": role, "content": content}


CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
    "{% endfor %}<|im_start|>assistant\n"
)
MODELFILE_MESSAGES = (msg("user", "Who are you?"), msg("assistant", "A demo."))


class TestChatMessages:
    def test_modelfile_system_and_messages_come_first(self) -> None:
        result = chat_messages(
            [msg("user", "hi")],
            system="Be brief.",
            modelfile_messages=MODELFILE_MESSAGES,
        )
        assert result == [
            msg("system", "Be brief."),
            *MODELFILE_MESSAGES,
            msg("user", "hi"),
        ]

    def test_a_leading_request_system_message_replaces_the_modelfile_one(self) -> None:
        result = chat_messages(
            [msg("system", "Be verbose."), msg("user", "hi")],
            system="Be brief.",
            modelfile_messages=MODELFILE_MESSAGES,
        )
        assert result == [
            *MODELFILE_MESSAGES,
            msg("system", "Be verbose."),
            msg("user", "hi"),
        ]

    def test_a_later_system_message_does_not_replace_it(self) -> None:
        result = chat_messages(
            [msg("user", "hi"), msg("system", "Now be verbose.")],
            system="Be brief.",
            modelfile_messages=(),
        )
        assert result == [
            msg("system", "Be brief."),
            msg("user", "hi"),
            msg("system", "Now be verbose."),
        ]

    @pytest.mark.parametrize("system", [None, ""])
    def test_no_modelfile_system_adds_nothing(self, system: str | None) -> None:
        assert chat_messages(
            [msg("user", "hi")], system=system, modelfile_messages=()
        ) == [msg("user", "hi")]

    def test_roles_are_lower_cased_and_other_fields_kept(self) -> None:
        request: list[JsonValue] = [
            {"role": "USER", "content": "hi", "images": ["aGk="]},
            {"role": "Assistant", "content": "", "thinking": "hm"},
        ]
        result = chat_messages(request, system="S", modelfile_messages=())
        assert result == [
            msg("system", "S"),
            {"role": "user", "content": "hi", "images": ["aGk="]},
            {"role": "assistant", "content": "", "thinking": "hm"},
        ]
        assert request[0] == {"role": "USER", "content": "hi", "images": ["aGk="]}

    def test_an_upper_case_system_message_still_replaces(self) -> None:
        result = chat_messages(
            [msg("SYSTEM", "mine")], system="theirs", modelfile_messages=()
        )
        assert result == [msg("system", "mine")]

    def test_no_messages_gets_only_the_system(self) -> None:
        assert chat_messages([], system="S", modelfile_messages=()) == [
            msg("system", "S")
        ]

    @pytest.mark.parametrize(
        ("bad", "message"),
        [
            ("hello", "messages[1] must be an object"),
            ({"content": "no role"}, "messages[1].role must be a string"),
            ({"role": 3, "content": "x"}, "messages[1].role must be a string"),
        ],
    )
    def test_malformed_messages_are_the_clients_fault(
        self, bad: JsonValue, message: str
    ) -> None:
        with pytest.raises(ClientError) as info:
            chat_messages([msg("user", "ok"), bad], system=None, modelfile_messages=())
        assert (info.value.status, info.value.message) == (400, message)
        assert info.value.param == "messages"


class TestGenerateMessages:
    def test_request_system_wins_over_modelfile(self) -> None:
        result = generate_messages(
            "hi",
            system="mine",
            modelfile_system="theirs",
            modelfile_messages=MODELFILE_MESSAGES,
            has_context=False,
        )
        assert result == [msg("system", "mine"), *MODELFILE_MESSAGES, msg("user", "hi")]

    @pytest.mark.parametrize("system", [None, ""])
    def test_modelfile_system_when_the_request_has_none(
        self, system: str | None
    ) -> None:
        result = generate_messages(
            "hi",
            system=system,
            modelfile_system="theirs",
            modelfile_messages=(),
            has_context=False,
        )
        assert result == [msg("system", "theirs"), msg("user", "hi")]

    def test_a_context_leaves_out_the_modelfile_messages(self) -> None:
        result = generate_messages(
            "hi",
            system=None,
            modelfile_system="theirs",
            modelfile_messages=MODELFILE_MESSAGES,
            has_context=True,
        )
        assert result == [msg("system", "theirs"), msg("user", "hi")]

    def test_images_go_with_the_prompt(self) -> None:
        result = generate_messages(
            "what is this?",
            system=None,
            modelfile_system=None,
            modelfile_messages=(),
            has_context=False,
            images=["aW1n"],
        )
        assert result == [
            {"role": "user", "content": "what is this?", "images": ["aW1n"]}
        ]


def roles(history: list[dict[str, JsonValue]]) -> list[str]:
    return [f"{m['role']}:{m['content']}" for m in history]


class TestTruncatedHistories:
    def test_drops_the_oldest_turns_and_keeps_system_and_last(self) -> None:
        conversation = [
            msg("system", "s1"),
            msg("user", "u1"),
            msg("assistant", "a1"),
            msg("system", "s2"),
            msg("user", "u2"),
        ]
        assert [roles(h) for h in truncated_histories(conversation)] == [
            ["system:s1", "user:u1", "assistant:a1", "system:s2", "user:u2"],
            ["system:s1", "assistant:a1", "system:s2", "user:u2"],
            ["system:s1", "system:s2", "user:u2"],
        ]

    def test_a_single_message_is_all_there_is(self) -> None:
        assert list(truncated_histories([msg("user", "u")])) == [[msg("user", "u")]]

    def test_no_messages(self) -> None:
        assert list(truncated_histories([])) == [[]]

    def test_the_last_message_stays_even_if_it_is_a_system_message(self) -> None:
        conversation = [msg("user", "u1"), msg("system", "s")]
        assert [roles(h) for h in truncated_histories(conversation)] == [
            ["user:u1", "system:s"],
            ["system:s"],
        ]

    @given(
        st.lists(st.sampled_from(["system", "user", "assistant", "tool"]), max_size=12)
    )
    def test_invariants(self, sequence: list[str]) -> None:
        conversation = [msg(role, str(i)) for i, role in enumerate(sequence)]
        histories = list(truncated_histories(conversation))
        assert histories[0] == conversation
        systems = [m for m in conversation if m["role"] == "system"]
        for shorter, longer in zip(histories[1:], histories, strict=False):
            assert len(shorter) == len(longer) - 1
        for history in histories:
            # An ordered subsequence with every system message and the last message.
            positions = [conversation.index(m) for m in history]
            assert positions == sorted(positions)
            assert all(m in history for m in systems)
            if conversation:
                assert history[-1] is conversation[-1]
        if conversation:
            last = conversation[-1]
            assert histories[-1] == [m for m in systems if m is not last] + [last]

    def test_first_fitting_history_from_a_real_template(self) -> None:
        template = ChatTemplate.compile(CHATML)
        conversation: list[Mapping[str, JsonValue]] = [
            msg("system", "You are terse."),
            msg("user", "long question " * 20),
            msg("assistant", "long answer " * 20),
            msg("user", "and now?"),
        ]
        budget = 200
        fitting = next(
            h
            for h in truncated_histories(conversation)
            if len(template.render(messages=h)) <= budget
        )
        assert fitting == [conversation[0], conversation[3]]
