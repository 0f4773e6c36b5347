"""Linear-time incremental JSON scanner for streamed tool-call input.

Claude streams a tool call's input as many small ``partial_json`` fragments whose concatenation is one
JSON object. :class:`JsonScanner` scans every fragment exactly once, left to right, and keeps just enough
state between fragments that a fragment may end anywhere: inside a string, inside an escape (``\\`` or
``\\u00`` at the end of a fragment), between the two halves of a surrogate pair, inside ``tr``+``ue``,
inside a number, inside a key, between a key and its colon.

States (``_state``) -- what the next non-whitespace character may be:

``_VALUE``        any value: at the start of the text, after ``:`` and after ``,`` in an array.
``_ARRAY_FIRST``  a value or ``]`` (just after ``[``).
``_OBJ_FIRST``    a key or ``}`` (just after ``{``).
``_KEY``          a key (after ``,`` in an object: a trailing comma is an error).
``_COLON``        ``:`` after a key.
``_AFTER``        ``,`` or the closer of the innermost container, after a value.
``_DONE``         the top-level value is complete; only whitespace may follow.
``_STRING``       inside a string body (``_is_key`` tells a key from a value). One compiled regex consumes
                  plain characters and *complete* escapes in bulk; it stops only at the closing quote, at
                  an escape cut by the end of the fragment, or at a character that is an error.
``_ESCAPE``       inside an escape split across fragments; ``_esc`` holds its first 1-5 characters.
``_NUMBER``       inside a number; ``_num`` is a sub-state of the JSON number grammar (``_N_*``), and
                  runs of digits are consumed with a regex.
``_LITERAL``      inside ``true`` / ``false`` / ``null``; ``_lit`` holds the characters still expected.

Containers are tracked with ``_stack`` (``'{'`` / ``'['``), capped at ``max_depth`` levels (512 unless
told): an opening bracket past it is an error like a syntax error, so a text the scanner accepts can be
handed to a recursive decoder safely. A syntax error freezes the state as it was just before the
offending character and records ``_error`` / ``_error_at``; later fragments are only buffered.

Memory: the fragments are kept as a list and joined once when the text is asked for; the joined text
then replaces them (``text()``), so the scanner never holds two copies. A top-level string value is the
one thing that grows large (a file's content): once ``_RETIRE_MIN`` characters of it are undecoded, what
has arrived is decoded and appended to the value so far (a string with one reference, which CPython
extends in place), and the text up to there is kept zlib-compressed (``_archive``). A cut escape, and an
escaped high surrogate whose low half may follow, wait for the next fragment, so the value is what one
decode of the whole string gives. The value is then held once, not beside its text; ``text()`` and
``preview()`` decompress for the call.

Fields: while the document is an object, a member of that top-level object is reported by :meth:`feed`
when its value completes -- a string at its closing quote, an object/array at its closing bracket, a
number or literal when the ``,`` / ``}`` after it is scanned (until then it waits in ``_pending``, because
``1`` may still become ``12`` or the document may turn out to be invalid). The value is decoded with
``json.loads`` of its raw text only, joined from the chunks that hold it (``_vchunk``/``_voff`` mark where
it began), so total work stays linear.

Preview: ``_commit`` is the offset just past the last *complete* value or opening bracket, so
``text[:_commit]`` plus closers for ``_stack`` is always valid JSON. :meth:`preview` decodes that, except
that a number that is already valid (``12``, not ``1.``/``1e``/``-``) is kept, and -- in trailing-strings
mode -- an unterminated string *value* is kept with its cut escape (and a dangling high surrogate) removed.
This reproduces ``jiter.from_json(..., partial_mode=...)`` on every prefix of a valid document, with these
documented differences: where jiter raises (a whitespace-only text, a top-level ``-`` / ``1.`` / ``tr``, an
unterminated top-level string in "on" mode) preview returns ``None``; jiter refuses nesting deeper than
about 200 levels and integers longer than 4300 digits, which the scanner accepts (up to 512 levels).
"""

from __future__ import annotations

import json
import json.decoder
import re
import zlib
from typing import Final

MAX_DEPTH: Final = 512

# Scanner states (see the module docstring).
_VALUE, _ARRAY_FIRST, _OBJ_FIRST, _KEY, _COLON, _AFTER, _DONE, _STRING, _ESCAPE, _NUMBER, _LITERAL = range(11)

# Number sub-states: after '-', after a leading '0', in integer digits, after '.', in fraction digits,
# after 'e'/'E', after the exponent sign, in exponent digits. Only _N_TERMINAL ones end a valid number.
_N_SIGN, _N_ZERO, _N_INT, _N_DOT, _N_FRAC, _N_E, _N_ESIGN, _N_EXP = range(8)
_N_TERMINAL: Final = frozenset({_N_ZERO, _N_INT, _N_FRAC, _N_EXP})
_N_DIGIT_RUNS: Final = frozenset({_N_INT, _N_FRAC, _N_EXP})

_WS: Final = re.compile(r"[ \t\n\r]*")
_DIGITS: Final = re.compile(r"[0-9]*")
# Plain characters in runs, and whole escapes each followed by a run (the "unrolled" form: one
# alternation per escape, not per run); possessive, so it never backtracks.
_STR_RUN: Final = re.compile(r'[^"\\\x00-\x1f]*+(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*+)*+')
# The longest valid beginning of an escape (used only where _STR_RUN stopped at a backslash).
_ESC_PREFIX: Final = re.compile(r'\\(?:["\\/bfnrt]|u[0-9a-fA-F]{0,4})?')
_HIGH_SURROGATE: Final = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}")
_LITERALS: Final[dict[str, tuple[str, object]]] = {
    "t": ("true", True),
    "f": ("false", False),
    "n": ("null", None),
}
_CLOSER: Final = {"{": "}", "[": "]"}


def _big_int(digits: str) -> int:
    """int() without the 4300-digit str->int limit (only reached for absurdly long integers)."""
    sign = -1 if digits.startswith("-") else 1
    digits = digits.lstrip("-")
    value = 0
    for i in range(0, len(digits), 4000):
        piece = digits[i : i + 4000]
        value = value * 10 ** len(piece) + int(piece)
    return sign * value


def _loads(raw: str) -> object:
    try:
        return json.loads(raw)
    except ValueError:  # only the int-digit limit: the scanner has validated the syntax already
        return json.loads(raw, parse_int=_big_int)


def _finite(text: str) -> float:
    value = float(text)
    if value - value != 0.0:  # inf - inf and nan - nan are nan: only finite numbers give 0
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


_STRICT = json.JSONDecoder(parse_float=_finite)  # the syntax is validated already; this adds the range
_scanstring: Final = json.decoder.scanstring  # type: ignore[attr-defined]
_COMPACT_MIN: Final = 64 * 1024  # a value at least this long, over several chunks, is decoded in place
_COMPACT_PREFIX: Final = 64 * 1024  # ... if at most this much of its first chunk comes before it
_LOOSE_MAX: Final = 256  # fragments kept apart before they are joined into one chunk
_RETIRE_MIN: Final = 256 * 1024  # undecoded characters of an open top-level string value before it is
# decoded so far and its text compressed (see "Memory" in the module docstring)


class JsonScanner:
    """Scans a JSON text fed in fragments, once, left to right (no re-scanning)."""

    def __init__(self, *, max_depth: int = MAX_DEPTH) -> None:
        self.max_depth = max_depth
        self._chunks: list[str] = []
        self._size = 0
        self._state = _VALUE
        self._stack: list[str] = []
        self._commit = 0
        self._complete = False
        self._error: str | None = None
        self._too_deep = False
        self._error_at = 0
        self._is_key = False
        self._str_start = 0  # offset of the opening quote of the current string
        self._esc = ""
        self._esc_start = 0  # offset of the backslash of the current (cut) escape
        self._num = _N_SIGN
        self._lit = ""  # the rest of the literal still expected
        self._lit_word = ""
        self._lit_value: object = None
        self._key = ""  # the current top-level key, decoded
        self._vchunk = 0  # where the current top-level key or value began: chunk index ...
        self._voff = 0  # ... and offset inside that chunk
        self._loose = 0  # chunks from here on are fragments as fed, not joined yet
        self._ci = 0  # the chunk that holds the fragment being scanned ...
        self._shift = 0  # ... and where in it the fragment starts (not 0 once a member was compacted)
        self._pending: tuple[str, object] | None = None
        # The top-level object as its members complete (None once it cannot be had strictly: the text
        # is not an object, or a member holds what strict JSON refuses, such as 1e400 or a huge int).
        self._object: dict[str, object] | None = {}
        # A long top-level string value, decoded as it arrives: the text before ``_archived`` is kept
        # zlib-compressed in ``_archive``; ``_chunks`` hold the rest. ``_vacc`` is the value decoded
        # so far (``_vretired``: the value began in the archive), ``_dec_from`` where decoding resumes.
        self._archive: list[bytes] = []
        self._archived = 0
        self._vacc = ""
        self._vretired = False
        self._dec_from = 0
        self._retire_min = _RETIRE_MIN
        self._work = 0  # loop steps + characters joined for decoding; lets tests check linearity

    # -- public API -------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Characters fed so far."""
        return self._size

    @property
    def error(self) -> str | None:
        """None, or ``'expected X, got Y at offset N'`` for the first syntax error."""
        return self._error

    @property
    def too_deep(self) -> bool:
        """True when the error is nesting past ``max_depth`` (the text before it nests no deeper)."""
        return self._too_deep

    @property
    def complete(self) -> bool:
        """True once a whole top-level value has been scanned (only whitespace may follow).

        A top-level number is complete only once whitespace follows it (``12`` may become ``123``).
        It stays True if garbage follows the value (that sets ``error`` as well).
        """
        return self._complete

    def value(self) -> dict[str, object] | None:
        """The whole text's value when it is a complete JSON object whose members all decoded strictly
        (as ``json.loads`` with NaN and out-of-range floats refused would give it), else None. Its
        members are the values ``feed`` reported (shared, not copied): no second parse of the text."""
        if self._error is not None or not self._complete:
            return None
        return self._object

    def text(self) -> str:
        """The whole text fed so far. The fragments are joined and replaced by the joined text (the
        compressed part, if any, is decompressed for the call, not kept)."""
        if self._chunks:
            self._join_from(0)
        live = self._chunks[0] if self._chunks else ""
        if not self._archive:
            return live
        parts = [zlib.decompress(z).decode("utf-8", "surrogatepass") for z in self._archive]
        parts.append(live)
        return "".join(parts)

    def _join_from(self, start: int) -> None:
        """Join ``chunks[start:]`` into one chunk (between scans), the current token's start kept right."""
        chunks = self._chunks
        if len(chunks) - start > 1:
            if self._vchunk > start:  # the current top-level token began in a chunk joined here
                self._voff += sum(len(c) for c in chunks[start : self._vchunk])
                self._vchunk = start
            chunks[start:] = ["".join(chunks[start:])]
        self._loose = len(chunks)

    def feed(self, fragment: str) -> list[tuple[str, object]]:
        """Scan one fragment. Returns the top-level object fields whose value completed inside this
        fragment, in order, as (key, decoded value). Never raises on bad JSON: on the first syntax error
        it records it (see `error`) and from then on only buffers (returns [])."""
        if not fragment:
            return []
        if len(self._chunks) - self._loose >= _LOOSE_MAX:
            # Many small fragments become one chunk now, while their memory can still serve the next
            # ones: the text is then held in few large pieces, not in a heap of small freed ones.
            self._join_from(self._loose)
        self._chunks.append(fragment)
        base = self._size
        self._size += len(fragment)
        if self._error is not None:
            return []
        out: list[tuple[str, object]] = []
        self._ci, self._shift = len(self._chunks) - 1, 0
        self._scan(fragment, base, self._ci, out)
        if (
            self._size - self._dec_from >= self._retire_min
            and (self._state == _STRING or self._state == _ESCAPE)
            and not self._is_key
            and self._error is None
            and len(self._stack) == 1
            and self._stack[0] == "{"
        ):
            self._retire()
        return out

    def preview(self, *, trailing_strings: bool = True) -> object:
        """Best-effort value of the text so far, as ``jiter.from_json(text, partial_mode=...)`` gives it
        (``"trailing-strings"`` when ``trailing_strings`` else ``True``). None for empty/whitespace-only
        text; after a syntax error, the preview of the valid prefix before the error. O(n)."""
        text = self.text()
        end = self._error_at if self._error is not None else self._size
        state = self._state
        closers = "".join(_CLOSER[c] for c in reversed(self._stack))
        if state == _NUMBER and self._num in _N_TERMINAL:
            body = text[:end]  # "12" is kept (jiter does), "1." / "1e" / "-" are dropped
        elif trailing_strings and state in (_STRING, _ESCAPE) and not self._is_key:
            # Close the unterminated string value: drop a cut escape, then a high surrogate whose low
            # half has not arrived (a backslash run of odd length before 'u' makes it a real escape).
            cut = end if state == _STRING else self._esc_start
            if cut - 6 > self._str_start and _HIGH_SURROGATE.fullmatch(text, cut - 6, cut):
                run = cut - 6
                while text[run - 1] == "\\":
                    run -= 1
                if (cut - 6 - run) % 2 == 0:
                    cut -= 6
            body = text[:cut] + '"'
        else:
            body = text[: self._commit]  # drop an unfinished key, literal, string or number
        if not body or body.isspace():
            return None
        try:
            return _loads(body + closers)
        except (ValueError, RecursionError):  # pragma: no cover - the scanner validated the syntax
            return None

    # -- scanning -----------------------------------------------------------------------------------

    def _fail(self, expected: str, got: str, offset: int) -> None:
        self._error = f"expected {expected}, got {got!r} at offset {offset}"
        self._error_at = offset

    def _raw(self, end: int) -> str:
        """Raw text of the current top-level key/value, from its start up to ``end`` in the fragment
        being scanned. Only one top-level token can span a chunk boundary at a time, so each chunk is
        joined at most once."""
        ci, sc, so = self._ci, self._vchunk, self._voff
        stop = self._shift + end
        if sc == ci:
            return self._chunks[ci][so:stop]
        raw = "".join([self._chunks[sc][so:], *self._chunks[sc + 1 : ci], self._chunks[ci][:stop]])
        self._work += len(raw)
        return raw

    def _span(self, end: int) -> tuple[str, int, int]:
        """The current top-level value as (text, start, stop): ``text[start:stop]``, to decode in place.

        A large value spread over many chunks is not copied out: its chunks are joined into one that
        replaces them, so the text is held once while its value is decoded. Only when the value starts
        near the beginning of its first chunk (the part before it is copied off), so the work stays
        linear."""
        chunks, ci, sc, so = self._chunks, self._ci, self._vchunk, self._voff
        stop = self._shift + end
        if sc == ci:
            return chunks[ci], so, stop
        if so > _COMPACT_PREFIX or stop + sum(len(c) for c in chunks[sc + 1 : ci]) < _COMPACT_MIN:
            raw = self._raw(end)
            return raw, 0, len(raw)
        last = chunks[ci]
        joined = "".join([chunks[sc][so:], *chunks[sc + 1 : ci + 1]])
        self._work += len(joined)
        chunks[sc:] = [chunks[sc][:so], joined] if so else [joined]
        self._ci = len(chunks) - 1
        self._loose = len(chunks)  # the joined chunk is not joined again
        self._shift += len(joined) - len(last)  # the fragment is the end of the joined chunk
        self._vchunk, self._voff = self._ci, 0
        return joined, 0, self._shift + end

    def _retire(self) -> None:
        """An open top-level string value grew long: decode what arrived of it (up to a point where
        decoding apart gives what decoding joined would), add that to the value, and keep the text up
        to there compressed. The value is then held once, as it will be returned, not beside its text."""
        archived = self._archived
        cut = self._esc_start if self._state == _ESCAPE else self._size  # a cut escape waits
        live = self._chunks[0] if len(self._chunks) == 1 else "".join(self._chunks)
        if len(self._chunks) > 1:
            self._work += len(live)
        start, stop = self._dec_from - archived, cut - archived
        if stop - 6 >= start and _HIGH_SURROGATE.fullmatch(live, stop - 6, stop):
            # An escaped high surrogate waits for its low half: decoded together they are one character.
            run = stop - 6
            while run > start and live[run - 1] == "\\":
                run -= 1
            if (stop - 6 - run) % 2 == 0:
                stop -= 6
                cut -= 6
        if stop <= start:
            return
        self._grow_value(_scanstring(live[start:stop] + '"', 0)[0])
        self._archive.append(zlib.compress(live[:stop].encode("utf-8", "surrogatepass"), 1))
        rest = live[stop:]
        del live
        self._chunks = [rest] if rest else []
        self._archived = self._dec_from = cut
        self._vretired = True
        self._vchunk = self._voff = 0  # the rest of the value begins the first chunk
        self._loose = len(self._chunks)

    def _grow_value(self, piece: str) -> str:
        """Append to the string value decoded so far; returns it."""
        acc = self._vacc
        self._vacc = ""  # the only reference is then ``acc``: CPython extends such a string in place
        acc += piece
        self._vacc = acc
        return acc

    def _scan(self, frag: str, base: int, ci: int, out: list[tuple[str, object]]) -> None:
        n = len(frag)
        pos = 0
        state = self._state
        stack = self._stack
        steps = 0
        while pos < n:
            steps += 1
            if state == _STRING:
                pos = _STR_RUN.match(frag, pos).end()  # type: ignore[union-attr]  # '*+' always matches
                if pos == n:
                    break
                c = frag[pos]
                if c == '"':
                    pos += 1
                    field = len(stack) == 1 and stack[0] == "{"
                    if self._is_key:
                        if field:
                            self._key = json.loads(self._raw(pos))
                        state = _COLON
                    else:
                        self._commit = base + pos
                        if field:  # a string member completes at its closing quote
                            text, start, _ = self._span(pos)
                            if self._vretired:  # its beginning is decoded already
                                value = self._grow_value(_scanstring(text, start)[0])
                                self._vacc, self._vretired = "", False
                            else:
                                value = _scanstring(text, start + 1)[0]
                            del text
                            member = (self._key, value)
                            out.append(member)
                            if self._object is not None:
                                self._object[member[0]] = member[1]
                        if not stack:
                            self._complete = True
                        state = _AFTER if stack else _DONE
                elif c == "\\":
                    # _STR_RUN eats whole escapes, so this one is either cut by the fragment's end or bad.
                    state = _ESCAPE
                    self._esc_start = base + pos
                    end = _ESC_PREFIX.match(frag, pos).end()  # type: ignore[union-attr]
                    if end < n:
                        self._fail(
                            "hex digit" if end > pos + 1 else "escape character", frag[end], base + end
                        )
                        break
                    self._esc = frag[pos:]
                    pos = n
                else:
                    self._fail("string character (control characters must be escaped)", c, base + pos)
                    break
            elif state == _ESCAPE:
                # Complete an escape cut at the previous fragment's end: \X is 2 characters, \uXXXX 6.
                esc = self._esc
                merged = esc + frag[pos : pos + 6 - len(esc)]
                full = 6 if merged[1] == "u" else 2
                valid = _ESC_PREFIX.match(merged).end()  # type: ignore[union-attr]
                if valid >= full:
                    pos += full - len(esc)
                    state = _STRING
                elif valid < len(merged):
                    self._fail(
                        "hex digit" if valid > 1 else "escape character",
                        merged[valid],
                        self._esc_start + valid,
                    )
                    break
                else:
                    self._esc = merged  # still cut: the fragment ended again inside the escape
                    pos = n
            elif state == _AFTER:
                pos = _WS.match(frag, pos).end()  # type: ignore[union-attr]
                if pos == n:
                    break
                c = frag[pos]
                top = stack[-1]
                if c == ",":
                    if self._pending is not None:  # a number/literal member completes at its delimiter
                        out.append(self._pending)
                        self._pending = None
                    state = _KEY if top == "{" else _VALUE
                    pos += 1
                elif c == _CLOSER[top]:
                    if self._pending is not None:
                        out.append(self._pending)
                        self._pending = None
                    pos += 1
                    state = self._close(ci, frag, base, pos, out)
                else:
                    self._fail(f"',' or {_CLOSER[top]!r}", c, base + pos)
                    break
            elif state in (_VALUE, _ARRAY_FIRST):
                pos = _WS.match(frag, pos).end()  # type: ignore[union-attr]
                if pos == n:
                    break
                c = frag[pos]
                if state == _ARRAY_FIRST and c == "]":
                    pos += 1
                    state = self._close(ci, frag, base, pos, out)
                    continue
                if len(stack) == 1 and stack[0] == "{":  # a top-level member's value starts here
                    self._vchunk, self._voff = self._ci, self._shift + pos
                elif not stack and c != "{":
                    self._object = None  # the text is not an object
                if c == '"':
                    self._is_key = False
                    self._str_start = base + pos
                    self._dec_from = base + pos + 1
                    state = _STRING
                elif c == "{" or c == "[":
                    if len(stack) >= self.max_depth:
                        self._too_deep = True
                        self._error = f"nesting deeper than {self.max_depth} levels at offset {base + pos}"
                        self._error_at = base + pos
                        break
                    stack.append(c)
                    self._commit = base + pos + 1  # "[" alone previews as [] (jiter agrees)
                    state = _OBJ_FIRST if c == "{" else _ARRAY_FIRST
                elif c == "-" or "0" <= c <= "9":
                    self._num = _N_SIGN if c == "-" else _N_ZERO if c == "0" else _N_INT
                    state = _NUMBER
                elif c in _LITERALS:
                    self._lit_word, self._lit_value = _LITERALS[c]
                    self._lit = self._lit_word[1:]
                    state = _LITERAL
                else:
                    self._fail("a value", c, base + pos)
                    break
                pos += 1
            elif state == _NUMBER:
                num = self._num
                if num in _N_DIGIT_RUNS:
                    pos = _DIGITS.match(frag, pos).end()  # type: ignore[union-attr]
                    if pos == n:
                        break
                c = frag[pos]
                digit = "0" <= c <= "9"
                if num in (_N_SIGN, _N_DOT, _N_ESIGN):
                    if not digit:
                        self._fail("a digit", c, base + pos)
                        break
                    if num == _N_SIGN:
                        self._num = _N_ZERO if c == "0" else _N_INT
                    else:
                        self._num = _N_FRAC if num == _N_DOT else _N_EXP
                    pos += 1
                elif num == _N_E:
                    if not (digit or c == "+" or c == "-"):
                        self._fail("a digit or sign", c, base + pos)
                        break
                    self._num = _N_EXP if digit else _N_ESIGN
                    pos += 1
                elif c == "." and (num in (_N_ZERO, _N_INT)):
                    self._num = _N_DOT
                    pos += 1
                elif (c == "e" or c == "E") and num != _N_EXP:
                    self._num = _N_E
                    pos += 1
                else:
                    # The number ended just before frag[pos] (which _AFTER/_DONE now judges, unconsumed):
                    # it is committed for preview, but reported only once a ',' or '}' follows.
                    state = self._end_scalar(ci, frag, base, pos, False)
            elif state == _LITERAL:
                rest = self._lit
                take = frag[pos : pos + len(rest)]
                if not rest.startswith(take):
                    bad = next(i for i, (a, b) in enumerate(zip(take, rest, strict=False)) if a != b)
                    self._fail(repr(self._lit_word), take[bad], base + pos + bad)
                    break
                pos += len(take)
                if len(take) == len(rest):  # the whole word is in: commit it, report at the delimiter
                    state = self._end_scalar(ci, frag, base, pos, True)
                else:
                    self._lit = rest[len(take) :]
            elif state in (_OBJ_FIRST, _KEY):
                pos = _WS.match(frag, pos).end()  # type: ignore[union-attr]
                if pos == n:
                    break
                c = frag[pos]
                if c == '"':
                    if len(stack) == 1:  # a top-level key: remember where it began to decode it
                        self._vchunk, self._voff = self._ci, self._shift + pos
                    self._is_key = True
                    state = _STRING
                    pos += 1
                elif c == "}" and state == _OBJ_FIRST:
                    pos += 1
                    state = self._close(ci, frag, base, pos, out)
                else:
                    self._fail("'\"' or '}'" if state == _OBJ_FIRST else "'\"'", c, base + pos)
                    break
            elif state == _COLON:
                pos = _WS.match(frag, pos).end()  # type: ignore[union-attr]
                if pos == n:
                    break
                c = frag[pos]
                if c != ":":
                    self._fail("':'", c, base + pos)
                    break
                state = _VALUE
                pos += 1
            else:  # _DONE
                pos = _WS.match(frag, pos).end()  # type: ignore[union-attr]
                if pos == n:
                    break
                self._fail("end of input", frag[pos], base + pos)
                break
        self._state = state
        self._work += steps

    def _close(self, ci: int, frag: str, base: int, pos: int, out: list[tuple[str, object]]) -> int:
        """A closing bracket was consumed (``frag[pos - 1]``): pop, commit, maybe report; next state."""
        self._stack.pop()
        self._commit = base + pos
        if not self._stack:
            self._complete = True
            return _DONE
        if len(self._stack) == 1 and self._stack[0] == "{":  # a container member completes here
            out.append(self._member(*self._span(pos)))
        return _AFTER

    def _end_scalar(self, ci: int, frag: str, base: int, pos: int, literal: bool) -> int:
        """A number or literal ended just before ``frag[pos]``: commit it; a member waits in _pending."""
        self._commit = base + pos
        stack = self._stack
        if not stack:
            self._complete = True
            return _DONE
        if len(stack) == 1 and stack[0] == "{":
            if literal:
                self._pending = (self._key, self._lit_value)
                if self._object is not None:
                    self._object[self._key] = self._lit_value
            else:
                self._pending = self._member(*self._span(pos))
        return _AFTER

    def _member(self, text: str, start: int, stop: int) -> tuple[str, object]:
        """A top-level member's value (``text[start:stop]``), decoded in place, strictly if it can be
        (and then kept for ``value()``)."""
        try:
            value = _STRICT.raw_decode(text, start)[0]
        except ValueError:  # 1e400, or an integer past the int-digit limit: reported, but not strict
            self._object = None
            return self._key, _loads(text[start:stop])
        if self._object is not None:
            self._object[self._key] = value
        return self._key, value
