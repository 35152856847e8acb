"""JSON read record by record: the file's outer array (Taskwarrior) or its `"tasks"` array (mcp-todo) is split into
its elements by one linear scan, and each element is decoded on its own, so one hostile element (nested 100,000
deep, a 5,000-digit number, 1 MB of text) fails alone, with its position, and the others are read. The scan also
counts the elements as it goes, so a file with too many is refused before anything is decoded."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final

from mcp_todo.porting.records import MAX_JSON_DEPTH, MAX_RECORD_BYTES, MAX_RECORDS, FormatError

# At the top of the container: a string (its escapes included), a run of opening or closing brackets (one token
# however deep it nests, so a 16 MB run of `[` is one step), or a comma; everything else is skipped.
_AT_TOP: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[{]+|[\]}]+|,', re.DOTALL)
# Inside an element only the brackets count: strings, commas, numbers and blanks between them are one token.
_INSIDE: Final = re.compile(r'(?:"[^"\\]*(?:\\.[^"\\]*)*"|[^"\[\]{}])+|[\[{]+|[\]}]+|"', re.DOTALL)
_KEY: Final = re.compile(r'\s*("[^"\\]*(?:\\.[^"\\]*)*")\s*:', re.DOTALL)
_UID: Final = re.compile(r'"(?:uuid|uid)"\s*:\s*"([^"\\]{1,200})"')
# Wider than any count a task holds (minutes, priorities, years); a longer number is a record's mistake, and Python
# refuses to read more than 4,300 digits anyway (with a message about sys.set_int_max_str_digits).
_MAX_DIGITS: Final = 18


@dataclass(frozen=True)
class Unreadable:
    """An element that was not decoded: why, and its uid when the scan could see one."""

    reason: str
    uid: str | None = None


def _whole_number(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_DIGITS:
        raise ValueError(f"a number of {len(text.lstrip('-')):,} digits")
    return int(text)


def _split(text: str, start: int, limit: int) -> tuple[int, list[tuple[int, int, int]]]:
    """(the end of the array or object opening at `start`, the (start, end, depth) of each of its elements or
    members); FormatError when its brackets do not balance or it holds more than `limit` elements."""
    pieces: list[tuple[int, int, int]] = []
    depth, deepest, piece_start, position = 0, 0, start + 1, start
    while (token := (_AT_TOP if depth <= 1 else _INSIDE).search(text, position)) is not None:
        position = token.end()
        first = token.group()[0]
        if first == "[" or first == "{":
            depth += len(token.group())
            deepest = max(deepest, depth)
        elif first == "]" or first == "}":
            if len(token.group()) >= depth:
                # This run closes the container (what it closes after that is the caller's).
                end = token.start() + depth
                if text[piece_start : end - 1].strip() or pieces:
                    pieces.append((piece_start, end - 1, deepest - 1))
                return end, pieces
            depth -= len(token.group())
        elif first == "," and depth == 1:
            pieces.append((piece_start, token.start(), deepest - 1))
            if len(pieces) > limit:
                raise FormatError(f"the file holds more than the {limit:,} records one import takes — split it")
            piece_start, deepest = token.end(), 1
    raise FormatError("not valid JSON: it ends inside an array, an object or a string")


def _decode(text: str, start: int, end: int, depth: int) -> Any:
    """The element text[start:end], or Unreadable with the reason."""
    piece = text[start:end]
    found = _UID.search(text, start, min(end, start + 4096))
    uid = found.group(1) if found else None
    if end - start > MAX_RECORD_BYTES:
        return Unreadable(f"it is larger than {MAX_RECORD_BYTES // 1024} KB", uid)
    if depth > MAX_JSON_DEPTH:
        return Unreadable(f"it nests deeper than {MAX_JSON_DEPTH} levels", uid)
    try:
        return json.loads(piece, parse_int=_whole_number)
    except json.JSONDecodeError as exc:
        return Unreadable(f"not valid JSON: {exc.msg}", uid)
    except ValueError as exc:
        return Unreadable(f"not valid JSON: {str(exc)[:120]}", uid)


_Piece = tuple[int, int, int]


def _outline(text: str) -> tuple[list[_Piece], dict[str, tuple[_Piece | None, list[_Piece]]] | None]:
    """The elements of the outer array (and None), or ([], the outer object's members by name: (the value's piece,
    or None for the "tasks" array, with the pieces of that array's elements))."""
    start = len(text) - len(text.lstrip())
    if start == len(text) or text[start] not in "[{":
        raise FormatError("not valid JSON: an export is a JSON array or object")
    end, pieces = _split(text, start, MAX_RECORDS)
    if text[end:].strip():
        raise FormatError(f"not valid JSON: extra data after the document, at character {end}")
    if text[start] == "[":
        return pieces, None
    members: dict[str, tuple[_Piece | None, list[_Piece]]] = {}
    for piece_start, piece_end, depth in pieces:
        key = _KEY.match(text, piece_start, piece_end)
        if key is None:
            raise FormatError(f"not valid JSON: an object member without a key near character {piece_start}")
        name = json.loads(key.group(1))
        value_start = piece_end - len(text[key.end() : piece_end].lstrip())
        if name == "tasks" and text.startswith("[", value_start):
            tasks_end, tasks = _split(text, value_start, MAX_RECORDS)
            if text[tasks_end:piece_end].strip():
                raise FormatError(f'not valid JSON: extra data after the "tasks" array, at character {tasks_end}')
            members[name] = (None, tasks)
        else:
            members[name] = ((key.end(), piece_end, depth), [])
    return [], members


def count_elements(text: str) -> int:
    """How many records the document holds (FormatError past the most an import takes), without decoding them."""
    pieces, members = _outline(text)
    return len(pieces) if members is None else len(members.get("tasks", (None, []))[1])


def load(text: str) -> Any:
    """The document, as `json.loads` reads it, except that each element of the outer array, or of the outer
    object's "tasks" array, is decoded alone and is an `Unreadable` when it cannot be."""
    pieces, members = _outline(text)
    if members is None:
        return [_decode(text, *piece) for piece in pieces]
    document: dict[str, Any] = {}
    for name, (piece, tasks) in members.items():
        if piece is None:
            document[name] = [_decode(text, *task) for task in tasks]
            continue
        value = _decode(text, *piece)
        if isinstance(value, Unreadable):
            raise FormatError(f"{name!r} cannot be read: {value.reason}")
        document[name] = value
    return document
