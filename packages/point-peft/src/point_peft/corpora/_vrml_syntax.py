"""VRML 2.0 (VRML97) syntax: tokens and the generic node grammar, with no scene semantics.

Any node type parses (``Type { field value ... }``), with ``DEF``/``USE`` (a ``USE`` returns the very
object its ``DEF`` named), ``ROUTE`` statements (skipped), comments and commas as whitespace, and
field values that are numbers, strings, booleans, nodes or ``[...]`` lists of them. Without a schema
a field's value ends where the next field name (a word that is not a number or boolean) begins.
``PROTO``/``EXTERNPROTO`` are refused. :mod:`point_peft.corpora.vrml` gives the nodes a meaning.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import numpy as np

from point_peft.corpora.mesh import MeshFormatError

# Whitespace, commas and comments are skipped by one match, the token read by a second: in a single
# pattern, failing at the end of the text would backtrack into a comment and find a "word" there.
_SKIP = re.compile(r"[\s,]*(?:\#[^\n]*[\s,]*)*")
_TOKEN = re.compile(
    r"""(?P<string>"(?:[^"\\]|\\.)*(?P<closed>")?)
      | (?P<punct>[{}\[\]])
      | (?P<word>[^\s,{}\[\]"\#]+)""",
    re.VERBOSE,
)
_NUMERIC_ARRAY = re.compile(r"[\s,0-9eE+\-.]*")
_UNSUPPORTED = {"PROTO", "EXTERNPROTO"}


@dataclass
class Node:
    """A parsed VRML node: its type name and its fields (numbers arrive as float64 arrays)."""

    type: str
    fields: dict = field(default_factory=dict)


def parse_nodes(text: str, source: str = "<string>") -> list[Node]:
    """The top-level nodes of a VRML 2.0 file (``DEF``/``USE`` resolved to shared objects)."""
    header = text.lstrip("\ufeff").split("\n", 1)[0].strip()
    if header.startswith("#VRML V1.0"):
        raise MeshFormatError(source, 1, "VRML 1.0 is not supported, only VRML 2.0 (VRML97)")
    if not header.startswith("#VRML V2.0"):
        raise MeshFormatError(source, 1, f"expected the header '#VRML V2.0 utf8', got {header!r}")
    return _Parser(text, source).parse_scene()


class _Parser:
    def __init__(self, text: str, source: str):
        self.text = text
        self.source = source
        self.position = 0
        self.lookahead: tuple[str, str, int] | None = None
        self.definitions: dict[str, Node] = {}

    # -- tokens -------------------------------------------------------------------------------

    def _scan(self) -> tuple[str, str, int] | None:
        start = _SKIP.match(self.text, self.position).end()
        match = _TOKEN.match(self.text, start)
        if match is None:  # after skipping, every character starts a token: this is the end
            self.position = len(self.text)
            return None
        self.position = match.end()
        kind = match.lastgroup
        if kind == "string" and match.group("closed") is None:
            self.fail(start, "unterminated string")
        return kind, match.group(), start

    def peek(self) -> tuple[str, str, int] | None:
        if self.lookahead is None:
            self.lookahead = self._scan()
        return self.lookahead

    def take(self, expected: str) -> tuple[str, str, int]:
        token = self.peek()
        if token is None:
            self.fail(len(self.text), f"the file ends where {expected} was expected")
        self.lookahead = None
        return token

    def take_exactly(self, value: str) -> None:
        kind, text, start = self.take(repr(value))
        if text != value or kind not in ("punct", "word"):
            self.fail(start, f"expected {value!r}, got {text!r}")

    def take_word(self, expected: str) -> tuple[str, int]:
        kind, text, start = self.take(expected)
        if kind != "word":
            self.fail(start, f"expected {expected}, got {text!r}")
        return text, start

    def fail(self, offset: int, message: str):
        raise MeshFormatError(self.source, self.text.count("\n", 0, offset) + 1, message)

    # -- grammar ------------------------------------------------------------------------------

    def parse_scene(self) -> list[Node]:
        nodes = []
        while self.peek() is not None:
            if self._skip_route():
                continue
            node = self.parse_node()
            if node is not None:
                nodes.append(node)
        return nodes

    def _skip_route(self) -> bool:
        token = self.peek()
        if token is None or token[:2] != ("word", "ROUTE"):
            return False
        self.take("ROUTE")
        self.take_word("an event (node.event)")
        self.take_exactly("TO")
        self.take_word("an event (node.event)")
        return True

    def parse_node(self) -> Node | None:
        name, start = self.take_word("a node")
        if name in _UNSUPPORTED:
            self.fail(start, f"{name} is not supported by this reader")
        if name == "NULL":
            return None
        if name == "USE":
            reference, start = self.take_word("a DEF name after USE")
            if reference not in self.definitions:
                self.fail(start, f"USE {reference!r} before any DEF {reference!r}")
            return self.definitions[reference]
        if name == "DEF":
            definition, _ = self.take_word("a name after DEF")
            node = self.parse_node()
            if node is None:
                self.fail(start, f"DEF {definition!r} names NULL")
            self.definitions[definition] = node
            return node
        self.take_exactly("{")
        node = Node(name)
        while True:
            kind, text, start = self.take(f"a field or '}}' to close {name}")
            if text == "}" and kind == "punct":
                return node
            if kind != "word":
                self.fail(start, f"expected a field name in {name}, got {text!r}")
            if text == "ROUTE":
                self.lookahead = (kind, text, start)
                self._skip_route()
                continue
            if text in _UNSUPPORTED:
                self.fail(start, f"{text} is not supported by this reader")
            node.fields[text] = self.parse_value(text)

    def _starts_node(self) -> bool:
        kind, text, _ = self.peek() or ("", "", 0)
        if kind != "word":
            return False
        if text in ("DEF", "USE", "NULL"):
            return True
        if _number(text) is not None or text in ("TRUE", "FALSE"):
            return False
        # A type name is followed by '{'; peek past it without consuming anything.
        match = _TOKEN.match(self.text, _SKIP.match(self.text, self.position).end())
        return match is not None and match.group() == "{"

    def parse_value(self, field_name: str):
        token = self.peek()
        if token is None:
            self.fail(len(self.text), f"the file ends before the value of {field_name}")
        kind, text, start = token
        if kind == "punct" and text == "[":
            return self._parse_list(field_name)
        if self._starts_node():
            return self.parse_node()
        atoms = []
        while (token := self.peek()) is not None and self._is_atom(token):
            atoms.append(self._atom(*self.take("a value")))
        if not atoms:
            self.fail(start, f"expected a value for {field_name}, got {text!r}")
        if all(isinstance(atom, float) for atom in atoms):
            return np.array(atoms, dtype=np.float64)
        return atoms[0] if len(atoms) == 1 else atoms

    def _parse_list(self, field_name: str):
        self.take_exactly("[")
        # Fast path: a purely numeric array (point, coordIndex) is converted in one numpy call.
        end = self.text.find("]", self.position)
        if end >= 0 and _NUMERIC_ARRAY.fullmatch(self.text, self.position, end):
            body = self.text[self.position : end].replace(",", " ")
            self.position, self.lookahead = end + 1, None
            try:
                return _parse_numbers(body)
            except ValueError:
                self.fail(end, f"malformed number in the array of {field_name}")
        items = []
        while True:
            token = self.peek()
            if token is None:
                self.fail(len(self.text), f"the array of {field_name} is never closed with ']'")
            if token[:2] == ("punct", "]"):
                self.take("]")
                break
            if self._starts_node():
                node = self.parse_node()
                if node is not None:
                    items.append(node)
            elif self._is_atom(token):
                items.append(self._atom(*self.take("a value")))
            else:
                self.fail(token[2], f"unexpected {token[1]!r} in the array of {field_name}")
        if items and all(isinstance(item, float) for item in items):
            return np.array(items, dtype=np.float64)
        return items

    @staticmethod
    def _is_atom(token: tuple[str, str, int]) -> bool:
        kind, text, _ = token
        if kind == "string":
            return True
        return kind == "word" and (text in ("TRUE", "FALSE") or _number(text) is not None)

    def _atom(self, kind: str, text: str, start: int):
        if kind == "string":
            return re.sub(r"\\(.)", r"\1", text[1:-1])
        if text in ("TRUE", "FALSE"):
            return text == "TRUE"
        return _number(text)


def _fromstring_raises() -> bool:
    """Whether this numpy's ``fromstring`` raises on unparsable text (older ones only warn)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            np.fromstring("1 x", dtype=np.float64, sep=" ")
        except ValueError:
            return True
    return False


_FROMSTRING_RAISES = _fromstring_raises()


def _parse_numbers(body: str) -> np.ndarray:
    """Whitespace-separated numbers, parsed in C (twice as fast as converting split strings)."""
    if _FROMSTRING_RAISES:
        return np.fromstring(body, dtype=np.float64, sep=" ")
    with warnings.catch_warnings():
        # Older numpy only warns (and truncates) on unparsable text: make that an error.
        warnings.simplefilter("error", DeprecationWarning)
        try:
            return np.fromstring(body, dtype=np.float64, sep=" ")
        except DeprecationWarning as warning:
            raise ValueError(str(warning)) from None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return float(int(text, 16)) if text[:2].lower() == "0x" else None
    except ValueError:
        return None
