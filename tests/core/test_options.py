"""Options: every option of Ollama's table, its type and default, layering, errors."""

from __future__ import annotations

from dataclasses import fields

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_core._errors import ClientError
from gateway_core._json import JsonValue
from gateway_core._options import (
    LoadOptions,
    Options,
    SamplingOptions,
    effective_num_ctx,
    parameters_text,
    resolve_options,
    validate_parameters,
)

# ollama-api.md §1.3, written out again so that a changed default shows up here.
LOAD_DEFAULTS: dict[str, object] = {
    "num_ctx": None,
    "num_batch": 512,
    "num_gpu": -1,
    "main_gpu": 0,
    "use_mmap": None,
    "num_thread": 0,
    "num_parallel": None,
}
SAMPLING_DEFAULTS: dict[str, object] = {
    "seed": -1,
    "num_predict": -1,
    "num_keep": 4,
    "top_k": 40,
    "top_p": 0.9,
    "min_p": 0.0,
    "typical_p": 1.0,
    "repeat_last_n": 64,
    "temperature": 0.8,
    "repeat_penalty": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "stop": (),
}
# A value of the right type that differs from the default, per option.
SAMPLE_VALUES: dict[str, JsonValue] = {
    "num_ctx": 8192,
    "num_batch": 256,
    "num_gpu": 12,
    "main_gpu": 1,
    "use_mmap": False,
    "num_thread": 6,
    "num_parallel": 2,
    "seed": 42,
    "num_predict": 128,
    "num_keep": 8,
    "top_k": 20,
    "top_p": 0.5,
    "min_p": 0.05,
    "typical_p": 0.7,
    "repeat_last_n": 32,
    "temperature": 0.1,
    "repeat_penalty": 1.2,
    "presence_penalty": 0.3,
    "frequency_penalty": 0.4,
    "stop": ["</s>", "\n\n"],
}
TYPE_NAMES = {
    "use_mmap": "boolean",
    "top_p": "number",
    "min_p": "number",
    "typical_p": "number",
    "temperature": "number",
    "repeat_penalty": "number",
    "presence_penalty": "number",
    "frequency_penalty": "number",
    "stop": "string or array of strings",
}


def _get(options: Options, key: str) -> object:
    if key in LOAD_DEFAULTS:
        return getattr(options.load, key)
    return getattr(options.sampling, key)


def test_defaults_are_ollamas() -> None:
    options = resolve_options()
    assert {f.name: getattr(options.load, f.name) for f in fields(LoadOptions)} == (
        LOAD_DEFAULTS
    )
    assert {
        f.name: getattr(options.sampling, f.name) for f in fields(SamplingOptions)
    } == SAMPLING_DEFAULTS
    assert options.ignored == ()
    assert options == Options()


@pytest.mark.parametrize("key", sorted(SAMPLE_VALUES))
def test_every_option_can_be_set(key: str) -> None:
    options = resolve_options({key: SAMPLE_VALUES[key]})
    expected = SAMPLE_VALUES[key]
    assert _get(options, key) == (
        tuple(expected) if isinstance(expected, list) else expected
    )
    assert options.ignored == ()


def test_the_table_and_the_classes_name_the_same_options() -> None:
    assert set(SAMPLE_VALUES) == set(LOAD_DEFAULTS) | set(SAMPLING_DEFAULTS)


def _wrong_values(key: str) -> list[JsonValue]:
    wrong: list[JsonValue] = [{"a": 1}, [1.5], None if key == "stop" else "text"]
    if key != "use_mmap":
        wrong.append(True)
    return [value for value in wrong if value is not None]


@pytest.mark.parametrize(
    ("key", "wrong"),
    [(key, wrong) for key in sorted(SAMPLE_VALUES) for wrong in _wrong_values(key)],
)
def test_a_wrong_type_is_a_400_naming_option_and_type(
    key: str, wrong: JsonValue
) -> None:
    with pytest.raises(ClientError) as info:
        resolve_options({key: wrong})
    assert info.value.status == 400
    assert info.value.param == "options"
    expected = TYPE_NAMES.get(key, "integer")
    assert info.value.message == f'option "{key}" must be of type {expected}'


def test_integers_take_integral_floats_but_not_fractions() -> None:
    assert resolve_options({"num_ctx": 2048.0}).load.num_ctx == 2048
    assert isinstance(resolve_options({"num_ctx": 2048.0}).load.num_ctx, int)
    with pytest.raises(ClientError, match='option "num_ctx" must be of type integer'):
        resolve_options({"num_ctx": 1.5})


def test_numbers_take_integers() -> None:
    temperature = resolve_options({"temperature": 1}).sampling.temperature
    assert temperature == 1.0
    assert isinstance(temperature, float)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"seed": 2**63}, 'option "seed" is out of range'),
        ({"seed": -(2**63) - 1}, 'option "seed" is out of range'),
        ({"num_ctx": 1e300}, 'option "num_ctx" is out of range'),
        ({"temperature": 10**400}, 'option "temperature" is out of range'),
        ({"num_batch": 0}, 'option "num_batch" must be between 1 and 65536, not 0'),
        # What ctypes would truncate to 0, which aborts llama.cpp.
        (
            {"num_batch": 2**32},
            'option "num_batch" must be between 1 and 65536, not 4294967296',
        ),
        ({"num_gpu": -2}, 'option "num_gpu" must be between -1 and 2147483647, not -2'),
        (
            {"main_gpu": -1},
            'option "main_gpu" must be between 0 and 2147483647, not -1',
        ),
        ({"num_thread": -1}, 'option "num_thread" must be between 0 and 1024, not -1'),
        (
            {"num_thread": 5000},
            'option "num_thread" must be between 0 and 1024, not 5000',
        ),
        ({"num_ctx": 0}, 'option "num_ctx" must be between 1 and 16777216, not 0'),
        (
            {"num_ctx": 2**31},
            'option "num_ctx" must be between 1 and 16777216, not 2147483648',
        ),
        ({"num_parallel": 0}, 'option "num_parallel" must be between 1 and 256, not 0'),
        (
            {"num_parallel": 257},
            'option "num_parallel" must be between 1 and 256, not 257',
        ),
        (
            {"num_predict": -3},
            'option "num_predict" must be between -2 and 2147483647, not -3',
        ),
        (
            {"num_keep": -2},
            'option "num_keep" must be between -1 and 2147483647, not -2',
        ),
        (
            {"top_k": 2**40},
            'option "top_k" must be between -2147483647 and 2147483647,'
            " not 1099511627776",
        ),
        (
            {"repeat_last_n": -2},
            'option "repeat_last_n" must be between -1 and 2147483647, not -2',
        ),
        (
            {"temperature": 1e39},
            'option "temperature" must be between -3.40282e+38 and 3.40282e+38,'
            " not 1e+39",
        ),
        (
            {"top_p": -1e300},
            'option "top_p" must be between -3.40282e+38 and 3.40282e+38, not -1e+300',
        ),
    ],
)
def test_unusable_values_are_400(options: dict[str, JsonValue], message: str) -> None:
    with pytest.raises(ClientError) as info:
        resolve_options(options)
    assert info.value.status == 400
    assert info.value.message == message


def test_int64_limits_are_accepted() -> None:
    assert resolve_options({"seed": 2**63 - 1}).sampling.seed == 2**63 - 1
    assert resolve_options({"seed": -(2**63)}).sampling.seed == -(2**63)


@pytest.mark.parametrize(
    ("stop", "expected"),
    [
        ("###", ("###",)),
        (["a", "b"], ("a", "b")),
        ([], ()),
        ("", ()),
        (["", "x", ""], ("x",)),
    ],
)
def test_stop_takes_a_string_or_a_list(
    stop: JsonValue, expected: tuple[str, ...]
) -> None:
    assert resolve_options({"stop": stop}).sampling.stop == expected


def test_later_layers_win_and_null_keeps_what_is_below() -> None:
    modelfile: dict[str, JsonValue] = {
        "temperature": 0.2,
        "stop": ["<|eot|>"],
        "num_ctx": 4096,
    }
    request: dict[str, JsonValue] = {"temperature": 1.1, "num_ctx": None}
    options = resolve_options(modelfile, request)
    assert options.sampling.temperature == 1.1
    assert options.sampling.stop == ("<|eot|>",)
    assert options.load.num_ctx == 4096
    assert resolve_options(None, request).load.num_ctx is None
    assert resolve_options(modelfile, None) == resolve_options(modelfile)


def test_a_request_stop_replaces_the_modelfile_stops() -> None:
    options = resolve_options({"stop": ["a", "b"]}, {"stop": "c"})
    assert options.sampling.stop == ("c",)


def test_unknown_keys_are_collected_once_in_order_and_never_fail() -> None:
    options = resolve_options(
        {"mirostat": 2, "num_ctx": 1024},
        {"tfs_z": "anything", "mirostat": None, "use_mlock": [1, {}]},
    )
    assert options.ignored == ("mirostat", "tfs_z", "use_mlock")
    assert options.load.num_ctx == 1024


def test_known_but_unused_options_are_checked_not_ignored() -> None:
    assert resolve_options({"draft_num_predict": 8}).ignored == ()
    with pytest.raises(ClientError, match="draft_num_predict"):
        resolve_options({"draft_num_predict": "eight"})


def test_load_options_are_hashable_and_compare_by_value() -> None:
    first = resolve_options({"num_ctx": 4096, "temperature": 0.1}).load
    second = resolve_options({"num_ctx": 4096.0, "temperature": 0.9}).load
    other = resolve_options({"num_ctx": 8192}).load
    assert first == second
    assert hash(first) == hash(second)
    assert first != other
    assert len({first, second, other}) == 2


@pytest.mark.parametrize(
    ("num_ctx", "default", "train", "expected"),
    [
        (None, 4096, 131072, 4096),
        (None, 4096, 2048, 2048),
        (8192, 4096, 131072, 8192),
        (8192, 4096, 2048, 2048),
        (8192, 4096, 0, 8192),
        (None, 4096, 0, 4096),
        (1, 4096, 0, 4),
        (0, 4096, 2048, 4),
        (-5, 4096, 2048, 4),
        (None, 4096, 2, 4),
    ],
)
def test_effective_num_ctx(
    num_ctx: int | None, default: int, train: int, expected: int
) -> None:
    load = LoadOptions(num_ctx=num_ctx)
    assert effective_num_ctx(load, default=default, train=train) == expected


def test_parameters_text_is_ollamas_show_format() -> None:
    text = parameters_text(
        {
            "num_ctx": 2048,
            "temperature": 0.7,
            "top_p": 1.0,
            "stop": ["<|eot_id|>", 'say "hi"'],
            "use_mmap": False,
            "a_very_long_parameter_name_beyond_30": 1,
        }
    )
    assert text.split("\n") == [
        "num_ctx                        2048",
        "temperature                    0.7",
        "top_p                          1",
        'stop                           "<|eot_id|>"',
        'stop                           "say \\"hi\\""',
        "use_mmap                       false",
        "a_very_long_parameter_name_beyond_30 1",
    ]
    assert parameters_text({}) == ""


def test_parameters_text_keeps_text_readable_and_on_one_line() -> None:
    text = parameters_text({"stop": ["\n", "终"]})
    assert (
        text
        == 'stop                           "\\n"\nstop                           "终"'
    )


def test_validate_parameters_normalizes() -> None:
    assert validate_parameters(
        {"num_ctx": 2048.0, "stop": "###", "top_p": 1, "seed": None, "use_mmap": True}
    ) == {"num_ctx": 2048, "stop": ["###"], "top_p": 1.0, "use_mmap": True}


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"mirostat": 1}, 'unknown parameter "mirostat"'),
        ({"num_ctx": "big"}, 'parameter "num_ctx" must be of type integer'),
        ({"stop": [1]}, 'parameter "stop" must be of type string or array of strings'),
        ({"num_batch": 0}, 'parameter "num_batch" must be between 1 and 65536, not 0'),
        (
            {"num_parallel": 1000},
            'parameter "num_parallel" must be between 1 and 256, not 1000',
        ),
        ({"seed": 2**64}, 'parameter "seed" is out of range'),
    ],
)
def test_validate_parameters_refuses_what_would_be_stored_wrong(
    parameters: dict[str, JsonValue], message: str
) -> None:
    with pytest.raises(ClientError) as info:
        validate_parameters(parameters)
    assert info.value.status == 400
    assert info.value.param == "parameters"
    assert info.value.message == message


def test_validated_parameters_resolve_to_the_same_options() -> None:
    raw: dict[str, JsonValue] = dict(SAMPLE_VALUES)
    assert resolve_options(validate_parameters(raw)) == resolve_options(raw)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
option_keys = st.sampled_from([*SAMPLE_VALUES, "draft_num_predict", "mirostat"])


@given(st.lists(st.dictionaries(option_keys, json_values, max_size=5), max_size=3))
def test_any_json_resolves_or_is_a_400(layers: list[dict[str, JsonValue]]) -> None:
    try:
        options = resolve_options(*layers)
    except ClientError as exc:
        error: ClientError | None = exc
    else:
        error = None
    if error is not None:
        assert (error.status, error.param) == (400, "options")
        return
    named_unknown = any("mirostat" in layer for layer in layers)
    assert options.ignored == (("mirostat",) if named_unknown else ())


def _valid_value(key: str) -> st.SearchStrategy[JsonValue]:
    if key == "use_mmap":
        return st.booleans()
    if key == "stop":
        return st.lists(st.text(min_size=1, max_size=4), max_size=3)
    if key == "repeat_penalty":  # llama.cpp divides by it
        return st.floats(min_value=0.01, max_value=2)
    if key in TYPE_NAMES:
        return st.floats(min_value=-2, max_value=2)
    return st.integers(min_value=1, max_value=256)


requests = st.lists(st.sampled_from(sorted(SAMPLE_VALUES)), unique=True).flatmap(
    lambda keys: st.fixed_dictionaries({key: _valid_value(key) for key in keys})
)


@given(requests)
def test_the_last_layer_decides_every_key_it_sets(
    request: dict[str, JsonValue],
) -> None:
    options = resolve_options(SAMPLE_VALUES, request)
    for key, sample in SAMPLE_VALUES.items():
        expected = request.get(key, sample)
        got = _get(options, key)
        assert got == (tuple(expected) if isinstance(expected, list) else expected)


def test_sampling_values_that_cannot_be_sampled_with_are_a_400() -> None:
    for options, message in [
        ({"repeat_penalty": 0}, 'option "repeat_penalty" must be positive, not 0.0'),
        (
            {"repeat_last_n": -2},
            'option "repeat_last_n" must be between -1 and 2147483647, not -2',
        ),
    ]:
        with pytest.raises(ClientError) as caught:
            resolve_options(options)
        assert caught.value.status == 400
        assert caught.value.message == message
