"""Tests for the incremental JSON scanner (jiter is the oracle for previews)."""

from __future__ import annotations

import itertools
import json
import math
import tracemalloc
from collections.abc import Iterable

import jiter
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from incremental.core._jsonscan import MAX_DEPTH, JsonScanner

# -- helpers ------------------------------------------------------------------------------------------


def tag(value: object) -> object:
    """A form of ``value`` whose == also compares types, dict order and float bits (1 != 1.0 != True)."""
    if isinstance(value, dict):
        return ("dict", [(k, tag(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [tag(v) for v in value])
    if isinstance(value, float):
        return ("float", value.hex() if math.isfinite(value) else repr(value))
    return (type(value).__name__, value)


def run(pieces: Iterable[str]) -> tuple[JsonScanner, list[tuple[str, object]]]:
    scanner = JsonScanner()
    fields: list[tuple[str, object]] = []
    for piece in pieces:
        fields.extend(scanner.feed(piece))
    return scanner, fields


def split(text: str, cuts: Iterable[int]) -> list[str]:
    points = [0, *sorted(set(cuts)), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(points)]


def oracle(text: str, trailing_strings: bool) -> object:
    """jiter's partial parse; None where jiter raises (documented: preview returns None there)."""
    try:
        return jiter.from_json(text.encode(), partial_mode="trailing-strings" if trailing_strings else True)
    except ValueError:
        return None


def assert_preview_matches(scanner: JsonScanner, text: str) -> None:
    for mode in (True, False):
        assert tag(scanner.preview(trailing_strings=mode)) == tag(oracle(text, mode)), (text, mode)


# -- completion rules ---------------------------------------------------------------------------------


def test_string_member_completes_at_closing_quote() -> None:
    s = JsonScanner()
    assert s.feed('{"path": "a/b') == []
    assert s.feed('.py"') == [("path", "a/b.py")]
    assert s.feed(', "content": "x"') == [("content", "x")]
    assert s.feed("}") == []
    assert s.complete and s.error is None


def test_container_members_complete_at_closing_bracket() -> None:
    s = JsonScanner()
    assert s.feed('{"a": {"b": [1, {"c": "d"}]') == []  # nested values are never reported
    assert s.feed("}") == [("a", {"b": [1, {"c": "d"}]})]
    assert s.feed(', "e": [[]') == []
    assert s.feed("]") == [("e", [[]])]
    assert s.feed(', "f": {}, "g": []}') == [("f", {}), ("g", [])]


@pytest.mark.parametrize("literal", ["12", "-0.5e-3", "0", "true", "false", "null"])
@pytest.mark.parametrize("delimiter", [",", "}", " ,", "\n\t }"])
def test_scalar_members_complete_at_the_delimiter(literal: str, delimiter: str) -> None:
    s = JsonScanner()
    assert s.feed('{"k": ' + literal) == []
    # Whitespace alone does not complete it; the ',' or '}' does.
    assert s.feed(delimiter[:-1]) == []
    assert s.feed(delimiter[-1]) == [("k", json.loads(literal))]


def test_fields_only_for_a_top_level_object() -> None:
    for doc in ['[{"a": 1}, "b"]', '"{\\"a\\": 1}"', "12 ", "null"]:
        s, fields = run(doc)
        assert fields == [] and s.complete and s.error is None


def test_complete_and_top_level_scalars() -> None:
    s = JsonScanner()
    s.feed("12")
    assert not s.complete and s.preview() == 12  # "12" may still become "123"
    s.feed(" ")
    assert s.complete
    s, _ = run(["tr", "ue"])
    assert s.complete and s.preview() is True
    s, _ = run(['{"a": 1', "}", " \n "])
    assert s.complete and s.error is None


def test_empty_fragments_and_text_cache() -> None:
    s = JsonScanner()
    assert s.preview() is None and s.text() == "" and s.size == 0
    assert s.feed("") == []
    assert s.feed("  ") == []
    assert s.preview() is None
    s.feed('{"a"')
    assert s.text() == '  {"a"' and s.text() is s.text()  # joined once while nothing new is fed
    s.feed(":1}")
    assert s.text() == '  {"a":1}' and s.size == 9


# -- split-point hazards ------------------------------------------------------------------------------

HAZARDS = [
    '{"a": "x\\\\y\\"z\\n", "b": 1}',  # escaped backslash then escaped quote
    '{"é": "\\u00e9", "k\\u00e9y": "\\ud83d\\ude00!"}',  # \u escapes, surrogate pair
    '{"t": true, "f": false, "n": null}',  # literals
    '{"n": -12.5e+10, "z": 0, "m": -0.0, "e": 1E3}',  # numbers
    '{ "key" \n : \t "v" , "x" : [ 1 , 2 ] }',  # whitespace between every token
    '{"s": "😀 \\/ \\b\\f\\r\\t", "o": {"p": [true, {"q": "\\""}]}}',
]


@pytest.mark.parametrize("doc", HAZARDS)
def test_every_two_and_three_way_split_gives_the_same_fields(doc: str) -> None:
    expected = list(json.loads(doc).items())
    n = len(doc)
    for i in range(n + 1):
        assert run([doc[:i], doc[i:]])[1] == expected, i
    for i in range(0, n + 1, 3):
        for j in range(i, n + 1):
            assert run([doc[:i], doc[i:j], doc[j:]])[1] == expected, (i, j)
    s, fields = run(doc)  # one character at a time
    assert fields == expected and s.complete and s.error is None


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        (['{"a": "x\\', 'ny"}'], "x\ny"),  # backslash at the end of a fragment
        (['{"a": "\\u00', 'e9"}'], "é"),  # inside \u
        (['{"a": "\\', "u", "0", "0", "e", '9"}'], "é"),
        (['{"a": "\\ud83d', '\\ude00"}'], "😀"),  # between surrogate halves
        (['{"a": "\\ud83d\\', 'ude00"}'], "😀"),
        (['{"a": "\\ud83d\\ud', 'e00"}'], "😀"),
        (['{"a": tr', "ue}"], True),
        (['{"a": n', "u", "l", "l}"], None),
        (['{"a": 1', "2.", "5e", "-", "3}"], 12.5e-3),
        (['{"a', '": 1}'], 1),  # inside a key
        (['{"a"', " ", ":1}"], 1),  # between key and colon
        (['{"a":', '"', '"}'], ""),
    ],
)
def test_named_split_hazards(pieces: list[str], expected: object) -> None:
    s, fields = run(pieces)
    assert s.error is None
    assert tag(fields) == tag([("a", expected)])


# -- preview ------------------------------------------------------------------------------------------

PREVIEW_PREFIXES = [
    "",
    " ",
    "{",
    '{"',
    '{"a',
    '{"a"',
    '{"a":',
    '{"a": "',
    '{"a": "x\\',
    '{"a": "x\\u00',
    '{"a": "x\\u00e9',
    '{"a": "\\ud83d',
    '{"a": "\\ud83d\\',
    '{"a": "\\ud83d\\ude',
    '{"a": "\\ud83d\\ude00',
    '{"a": "x\\\\',  # an escaped backslash is not a cut escape
    '{"a": "x\\\\ud83d',  # ... and this is no surrogate escape
    '{"a": "x\\\\\\ud83d',
    '{"a": t',
    '{"a": true',
    '{"a": -',
    '{"a": 0',
    '{"a": -0',
    '{"a": 1.',
    '{"a": 1.5',
    '{"a": 1e',
    '{"a": 1E+',
    '{"a": 1e5',
    '{"a": 12, "b',
    '{"a": 12, "b": ',
    '{"a": [1, 2.',
    '{"a": [1, "ab',
    '{"a": [{"b": "c',
    '{"a": {"b":',
    '[{"a"',
    "[nul",
    "[1, 23",
    " [ 1 , ",
    '"ab\\',
    "-",
    "1.",
    "12",
    "tr",
    "true",
    '{"a": 1} ',
]


@pytest.mark.parametrize("prefix", PREVIEW_PREFIXES)
def test_preview_matches_jiter(prefix: str) -> None:
    s, _ = run(prefix)
    assert s.error is None
    assert_preview_matches(s, prefix)
    s, _ = run([prefix])  # splitting does not matter
    assert_preview_matches(s, prefix)


# -- errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "offset", "message"),
    [
        ('{"a": }', 6, "expected a value, got '}'"),
        ('{"a" 1}', 5, "expected ':', got '1'"),
        ('{"a": trux}', 9, "expected 'true', got 'x'"),
        ('{"a": nul}', 9, "expected 'null', got '}'"),
        ('{"a": 1} x', 9, "expected end of input, got 'x'"),
        ('{"a": 1}}', 8, "expected end of input"),
        ('{"a": "x\ny"}', 8, "control characters must be escaped"),
        ('{"a": "\\q"}', 8, "expected escape character, got 'q'"),
        ('{"a": "\\u12G4"}', 11, "expected hex digit, got 'G'"),
        ('{"a": 01}', 7, "expected ',' or '}', got '1'"),
        ('{"a": 1.}', 8, "expected a digit, got '}'"),
        ('{"a": 1e}', 8, "expected a digit or sign, got '}'"),
        ('{"a": -x}', 7, "expected a digit, got 'x'"),
        ('{"a": 1,}', 8, "expected '\"', got '}'"),
        ('{"a": [1}', 8, "expected ',' or ']', got '}'"),
        ("{1: 2}", 1, "expected '\"' or '}', got '1'"),
        ("[1 2]", 3, "expected ',' or ']', got '2'"),
        ("nope", 1, "expected 'null', got 'o'"),
        ("}", 0, "expected a value, got '}'"),
    ],
)
def test_syntax_errors(bad: str, offset: int, message: str) -> None:
    for pieces in ([bad], list(bad), [bad[: max(offset - 1, 0)], bad[max(offset - 1, 0) :]]):
        s, fields = run(pieces)
        assert s.error is not None and s.error.endswith(f" at offset {offset}"), s.error
        assert s.error.startswith(message) or message in s.error, s.error
        assert fields == (
            [("a", 1)] if bad.startswith(('{"a": 1}', '{"a": 1,')) else []
        )  # garbage after the value
        assert s.feed('"more", "x": 1}') == []  # after an error: only buffered
        assert s.text() == bad + '"more", "x": 1}'
        # The preview is that of the valid prefix before the error.
        prefix = bad[:offset]
        for mode in (True, False):
            assert tag(s.preview(trailing_strings=mode)) == tag(oracle(prefix, mode)), (prefix, mode)


def test_fields_before_an_error_are_still_reported() -> None:
    s = JsonScanner()
    assert s.feed('{"a": "x", "b": 1') == [("a", "x")]
    assert s.feed("x") == [] and s.error == "expected ',' or '}', got 'x' at offset 17"
    assert s.preview() == {"a": "x", "b": 1}


def test_depth_cap() -> None:
    ok = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    s, _ = run([ok])
    assert s.error is None and s.complete
    s, _ = run(["[" * (MAX_DEPTH + 1)])
    assert s.error == f"nesting deeper than {MAX_DEPTH} levels at offset {MAX_DEPTH}"
    s, _ = run(['{"a": ' + "[" * MAX_DEPTH])
    assert s.error is not None and s.error.startswith("nesting deeper than 512")


def test_huge_integer_member_does_not_raise() -> None:
    digits = "7" * 5000  # beyond the 4300-digit str->int limit json.loads would otherwise hit
    s, fields = run(['{"a": ', digits[:2500], digits[2500:], "}"])
    assert s.error is None and fields == [("a", int("7" * 4000) * 10**1000 + int("7" * 1000))]
    assert s.preview() == {"a": fields[0][1]}


# -- linearity ----------------------------------------------------------------------------------------


def _work(total: int) -> int:
    line = 'def f(x):\n    return "\\"%s\\"" % x  # é 😀\n'
    content = (line * (total // len(line) + 1))[:total]
    doc = json.dumps({"path": "a.py", "content": content, "n": [1, 2, {"k": None}]})
    s = JsonScanner()
    for i in range(0, len(doc), 20):
        s.feed(doc[i : i + 20])
    assert s.complete and s.error is None
    return s._work


def test_scan_work_is_linear() -> None:
    # _work counts loop steps plus characters joined to decode members; no wall-clock involved.
    small, large = _work(100_000), _work(1_000_000)
    assert large <= 11 * small


# -- property tests -----------------------------------------------------------------------------------

# No lone surrogates: streamed text is valid UTF-8 (and jiter rejects them).
_chars = st.one_of(
    st.sampled_from('"\\/\n\r\t\b\f\x00\x1f\x7f é😀\u2028{}[],: '), st.characters(exclude_categories=["Cs"])
)
_strings = st.text(_chars, max_size=12)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    _strings,
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_strings, inner, max_size=4),
    max_leaves=12,
)
_objects = st.dictionaries(_strings, _values, max_size=6)


@st.composite
def documents(draw: st.DrawFn, top: st.SearchStrategy[object] = _objects) -> str:
    value = draw(top)
    indent = draw(st.sampled_from([None, 0, 1, 2, "\t"]))
    separators = draw(st.sampled_from([None, (",", ":"), (", ", ": "), (" ,\n", " :\t")]))
    text = json.dumps(value, indent=indent, separators=separators, ensure_ascii=draw(st.booleans()))
    return draw(st.sampled_from(["", " ", "\n"])) + text + draw(st.sampled_from(["", " ", "\r\n"]))


def _cuts(text: str) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, len(text)), max_size=max(1, len(text) // 3))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fields_equal_json_loads_for_any_split(data: st.DataObject) -> None:
    text = data.draw(documents())
    expected = tag(list(json.loads(text).items()))
    for pieces in (split(text, data.draw(_cuts(text))), split(text, data.draw(_cuts(text))), list(text)):
        s, fields = run(pieces)
        assert s.error is None and s.complete
        assert tag(fields) == expected
        assert s.text() == text and s.size == len(text)
        assert tag(s.preview()) == tag(s.preview(trailing_strings=False)) == tag(json.loads(text))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_preview_of_every_prefix_matches_jiter(data: st.DataObject) -> None:
    text = data.draw(documents())
    cuts = sorted(set(data.draw(_cuts(text))))
    s = JsonScanner()
    for piece in text:  # every prefix, one character at a time
        s.feed(piece)
        assert_preview_matches(s, s.text())
    # and a few prefixes reached with coarser, random splits
    for cut in cuts:
        t, _ = run(split(text[:cut], data.draw(_cuts(text[:cut]))))
        assert_preview_matches(t, text[:cut])


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_preview_of_scalar_documents(data: st.DataObject) -> None:
    # Top-level scalars and arrays: where jiter raises (e.g. "-", "tr", '"ab' in "on" mode) we give None.
    text = data.draw(documents(_values))
    s = JsonScanner()
    for piece in text:
        s.feed(piece)
        assert_preview_matches(s, s.text())
    assert s.error is None


def _mutate(text: str, position: int, kind: int, char: str) -> str:
    if kind == 0:
        return text[:position] + char + text[position:]
    if kind == 1:
        return text[:position] + text[position + 1 :]
    return text[:position] + char + text[position + 1 :]


class _PairsDict(dict[str, object]):
    def __init__(self, pairs: list[tuple[str, object]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs


def _strict_loads(text: str) -> bool:
    def reject(name: str) -> object:
        raise ValueError(name)

    try:
        json.loads(text, parse_constant=reject)
    except ValueError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_documents_agree_with_json_loads(data: st.DataObject) -> None:
    text = data.draw(documents())
    bad = _mutate(
        text,
        data.draw(st.integers(0, len(text))),
        data.draw(st.integers(0, 2)),
        data.draw(st.sampled_from(list('{}[]":,\\ 0-.e+tfnu1\x01x'))),
    )
    s, fields = run(split(bad, data.draw(_cuts(bad))))
    valid = _strict_loads(bad)
    assert (s.error is None and s.complete) == valid, (bad, s.error)
    if s.error is not None:
        at = int(s.error.rsplit(" ", 1)[1])
        prefix = bad[:at]
        # Everything before the error offset is a valid prefix, and the preview is that prefix's.
        if prefix.lstrip().startswith(("{", "[")):
            for mode in (True, False):
                expected = oracle(prefix, mode)
                if expected is None:
                    # jiter raised: the only way for a container prefix is a mutation that cut a surrogate
                    # pair, e.g. '"\\ud800"\\udc00' -- legal JSON syntax that jiter rejects, json accepts.
                    assert "\\ud" in prefix.lower()
                    continue
                assert tag(s.preview(trailing_strings=mode)) == tag(expected)
    elif valid:
        value = json.loads(bad, object_pairs_hook=_PairsDict)
        if isinstance(value, _PairsDict):  # a mutation may duplicate a key: each member is reported
            assert tag(fields) == tag(value.pairs)


@settings(max_examples=300, deadline=None)
@given(st.text(st.one_of(st.sampled_from(list('{}[]":,\\ 0-.eE+tfnrulsa\n')), st.characters())), st.data())
def test_random_text_never_raises(text: str, data: st.DataObject) -> None:
    s = JsonScanner()
    for piece in split(text, data.draw(_cuts(text))):
        assert isinstance(s.feed(piece), list)
        s.preview()
        s.preview(trailing_strings=False)
    assert s.text() == text
    assert s.error is None or " at offset " in s.error
    _ = s.complete


def test_split_helper() -> None:  # guards the helper the property tests rely on
    assert split("abcdef", [3, 1, 3, 0, 6]) == ["", "a", "bc", "def", ""]


@pytest.mark.parametrize("prefix", [0, 100, 70_000])
def test_a_large_member_over_many_fragments_is_decoded_in_place_with_the_same_results(prefix: int) -> None:
    # Past 64 KB over several chunks a member's chunks are joined into one and decoded there; a member
    # that starts far into its first chunk is copied out instead. Either way: the same fields, text,
    # preview and value as one whole feed.
    content = ('line "quoted" \\ naïve ✓\n' * 6000)[:150_000]
    doc = {"pad": "p" * prefix, "content": content, "tail": [1, {"x": 2.5}], "n": 7}
    text = json.dumps(doc, ensure_ascii=False)
    whole, whole_fields = run([text])
    cut = text.index('"content"')
    pieces = [text[:cut], *[text[i : i + 997] for i in range(cut, len(text), 997)]]
    s, fields = run(pieces)
    assert fields == whole_fields == list(doc.items())
    assert s.value() == doc and whole.value() == doc
    assert s.text() == text and s.preview() == doc
    assert s._work <= 4 * len(text) + 10 * len(pieces)  # still linear


def test_many_small_fragments_are_joined_as_they_come_and_nothing_changes() -> None:
    doc = {"a": "x" * 3000, "b": [{"c": i} for i in range(300)], "d": "é✓" * 500, "e": 12}
    text = json.dumps(doc, ensure_ascii=False)
    s, fields = run(text[i : i + 3] for i in range(0, len(text), 3))  # thousands of fragments
    assert len(s._chunks) < 300  # joined every 256 fragments, not kept apart
    assert fields == list(doc.items()) and s.value() == doc and s.text() == text
    assert s._work <= 4 * len(text) + 20 * (len(text) // 3)


# -- long string values: decoded as they arrive, their text kept compressed ---------------------------


def _retiring(pieces: Iterable[str], at: int) -> tuple[JsonScanner, list[tuple[str, object]]]:
    scanner = JsonScanner()
    scanner._retire_min = at  # the threshold, made tiny so that short documents take this path
    fields: list[tuple[str, object]] = []
    for piece in pieces:
        fields.extend(scanner.feed(piece))
    return scanner, fields


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_decoding_a_string_value_as_it_arrives_changes_nothing(data: st.DataObject) -> None:
    text = data.draw(documents())
    at = data.draw(st.integers(1, 8))
    whole, whole_fields = run([text])
    for pieces in (split(text, data.draw(_cuts(text))), list(text)):
        s, fields = _retiring(pieces, at)
        assert s.error is None and s.complete
        assert tag(fields) == tag(whole_fields)
        assert tag(s.value()) == tag(whole.value())
        assert s.text() == text and s.size == len(text)
        assert tag(s.preview()) == tag(whole.preview())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_previews_and_errors_are_the_same_when_string_values_are_decoded_as_they_arrive(
    data: st.DataObject,
) -> None:
    text = data.draw(documents())
    bad = _mutate(
        text,
        data.draw(st.integers(0, len(text))),
        data.draw(st.integers(0, 2)),
        data.draw(st.sampled_from(list('{}[]":,\\ 0-.e+tfnu1\x01x'))),
    )
    at = data.draw(st.integers(1, 8))
    pieces = split(bad, data.draw(_cuts(bad)))
    plain, retiring = JsonScanner(), JsonScanner()
    retiring._retire_min = at
    for piece in pieces:
        assert tag(retiring.feed(piece)) == tag(plain.feed(piece))
        for mode in (True, False):
            assert tag(retiring.preview(trailing_strings=mode)) == tag(plain.preview(trailing_strings=mode))
    assert retiring.error == plain.error and retiring.complete == plain.complete
    assert retiring.text() == plain.text() == bad


@pytest.mark.parametrize("step", [997, 4096, 65_537])
def test_a_long_string_value_is_held_once_decoded_with_its_text_compressed(step: int) -> None:
    # Escapes and surrogate pairs fall on every kind of cut; the value decodes the same, the text is
    # given back exactly, and the raw text is not held beside the value.
    content = ('line "quoted" \\ naïve ✓ 😀\t\n' * 40_000)[:1_000_000]
    doc = {"path": "a.txt", "content": content, "n": 7}
    text = json.dumps(doc)  # ensure_ascii: every non-ASCII character is an escape, 😀 a pair of them
    s, fields = run(text[i : i + step] for i in range(0, len(text), step))
    assert fields == list(doc.items()) and s.value() == doc
    assert s._archive and sum(len(c) for c in s._chunks) < len(text) // 4  # compressed, not kept
    assert s.text() == text and s.preview() == doc


def test_a_long_string_value_costs_at_most_its_decoded_size_plus_a_fraction() -> None:
    # The value of 4 MB of content with characters past U+00FF is 2 bytes a character; its JSON text
    # (1 byte a character, escapes longer) is not held beside it: the peak stays well under 3x.
    content = ('line "quoted" \\ naïve ✓\n' * 200_000)[: 4 * 1024 * 1024]
    text = json.dumps({"path": "a.txt", "content": content})
    del content
    step = 64 * 1024
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        s = JsonScanner()
        for i in range(0, len(text), step):
            s.feed(text[i : i + step])
        held, peak = (m - base for m in tracemalloc.get_traced_memory())
    finally:
        tracemalloc.stop()
    chars = len(s.value()["content"])  # type: ignore[index, arg-type]
    assert peak < 2.6 * chars and held < 2.6 * chars, (peak / chars, held / chars)
