"""Reading SQL written by pg_dump or pg_dumpall without running it: the text split into statements
of tokens, with quoted identifiers, string literals, dollar quotes and comments understood, psql's
meta-commands (a backslash outside quotes: the rest of the line) set apart and the data lines of
`COPY … FROM stdin` skipped. Read line by line, so a plain dump of any size streams through.

The text may come from an untrusted server: nothing here runs it, and what a statement says is
taken from its tokens (a quoted name is one token whatever it holds), never from its text.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

WORD, IDENT, STRING, NUMBER, OP = "word", "ident", "string", "number", "op"
_LETTER = r"A-Za-z_\x80-\U0010ffff"
_TOKEN = re.compile(rf"""
    (?P<space>[ \t\n\r\f\v]+)
  | (?P<line_comment>--[^\n\r]*)
  | (?P<block_comment>/\*)
  | (?P<ident>")
  | (?P<estring>[eE]')
  | (?P<string>')
  | (?P<dollar>\$(?:[{_LETTER}][{_LETTER}0-9]*)?\$)
  | (?P<word>[{_LETTER}][{_LETTER}0-9$]*)
  | (?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\$\d+)
  | (?P<meta>\\)
  | (?P<op>.)
""", re.VERBOSE | re.DOTALL)
_STRING_END = re.compile(r"(?:[^']|'')*'(?!')")
_ESTRING_END = re.compile(r"(?:[^'\\]|\\.|'')*'(?!')", re.DOTALL)
_IDENT_END = re.compile(r'(?:[^"]|"")*"(?!")')
_COMMENT_PART = re.compile(r"/\*|\*/")
_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{1,2}|[0-7]{1,3}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|.)", re.DOTALL)


@dataclass(frozen=True)
class Token:
    """One token: `kind` WORD (unquoted: keyword or name, folded to lower case as PostgreSQL folds
    it), IDENT (a quoted identifier, unquoted), STRING (a literal's value), NUMBER or OP (one
    character; `;` ends a statement); `depth` is how many parentheses it is inside."""

    kind: str
    value: str
    depth: int = 0

    def is_word(self, *words: str) -> bool:
        return self.kind == WORD and self.value in words


@dataclass(frozen=True)
class MetaCommand:
    """A psql meta-command line (`\\connect`, `\\restrict`, `\\! …`): never run here."""

    text: str

    @property
    def name(self) -> str:
        return self.text.split(None, 1)[0] if self.text.strip() else "\\"


Statement = list[Token]


def fold(word: str) -> str:
    """An unquoted identifier as PostgreSQL stores it: ASCII letters in lower case, others kept."""
    return word.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _unescape(body: str) -> str:
    def one(match: re.Match) -> str:
        escape = match.group(1)
        if escape[0] in "xuU" and len(escape) > 1:
            return chr(int(escape[1:], 16))
        if escape[0] in "01234567":
            return chr(int(escape, 8))
        return _ESCAPES.get(escape, escape)
    return _ESCAPE.sub(one, body.replace("''", "'"))


class Lexer:
    """Tokens of SQL text fed a line at a time; `feed` returns the statements (and meta-commands)
    completed by that line. A quote, dollar quote or comment may span lines."""

    def __init__(self) -> None:
        self._tokens: Statement = []
        self._depth = 0
        self._open: tuple | None = None  # within a token that spans lines: (kind, collected text, extra)

    def feed(self, line: str) -> list[Statement | MetaCommand]:
        done: list[Statement | MetaCommand] = []
        pos = self._continue(line, 0)
        while pos < len(line):
            match = _TOKEN.match(line, pos)
            kind, text, pos = match.lastgroup, match.group(), match.end()
            if kind in ("space", "line_comment"):
                continue
            if kind == "meta":
                done.append(MetaCommand(line[pos - 1:].rstrip("\r\n")))
                return done
            if kind == "block_comment":
                self._open = ("comment", "", 1)
            elif kind in ("ident", "estring", "string"):
                self._open = (kind, "", None)
            elif kind == "dollar":
                self._open = ("dollar", "", text)
            elif kind == "word":
                self._add(WORD, fold(text))
            elif kind == "number":
                self._add(NUMBER, text)
            elif text == ";" and self._depth == 0:
                if self._tokens:
                    done.append(self._tokens)
                self._tokens, self._depth = [], 0
            else:
                if text == ")":
                    self._depth = max(self._depth - 1, 0)
                self._add(OP, text)
                if text == "(":
                    self._depth += 1
            pos = self._continue(line, pos)
        return done

    def _add(self, kind: str, value: str) -> None:
        self._tokens.append(Token(kind, value, self._depth))

    def _continue(self, line: str, pos: int) -> int:
        """Go on with a token left open (by an earlier line or just now); where the line goes on."""
        if self._open is None:
            return pos
        kind, collected, extra = self._open
        if kind == "comment":
            depth = extra
            for match in _COMMENT_PART.finditer(line, pos):
                depth += 1 if match.group() == "/*" else -1
                if depth == 0:
                    self._open = None
                    return match.end()
            self._open = ("comment", "", depth)
            return len(line)
        if kind == "dollar":
            end = line.find(extra, pos)
            if end < 0:
                self._open = (kind, collected + line[pos:], extra)
                return len(line)
            self._open = None
            self._add(STRING, collected + line[pos:end])
            return end + len(extra)
        text = collected + line[pos:]
        match = {"ident": _IDENT_END, "string": _STRING_END, "estring": _ESTRING_END}[kind].match(text)
        if match is None:
            self._open = (kind, text, None)
            return len(line)
        self._open = None
        body = match.group()[:-1]
        if kind == "ident":
            self._add(IDENT, body.replace('""', '"'))
        else:
            self._add(STRING, _unescape(body) if kind == "estring" else body.replace("''", "'"))
        return len(line) - (len(text) - match.end())

    def finish(self) -> list[Statement]:
        """What is left at the end of the text: a statement without its `;` (psql runs it too)."""
        left, self._tokens = self._tokens, []
        return [left] if left and self._open is None else []


def is_copy_from_stdin(statement: Statement) -> bool:
    """`COPY … FROM stdin`: its data lines follow, up to a line `\\.`."""
    top = [token for token in statement if token.depth == 0]
    return bool(top) and top[0].is_word("copy") and any(
        a.is_word("from") and b.is_word("stdin") for a, b in zip(top, top[1:]))


def statements(lines: Iterable[bytes | str]) -> Iterator[Statement | MetaCommand]:
    """The statements and meta-commands of SQL text given as lines (bytes are read as UTF-8, an
    invalid byte replaced), the data of `COPY … FROM stdin` skipped."""
    lexer, in_copy = Lexer(), False
    for line in lines:
        if in_copy:
            in_copy = line.rstrip(b"\r\n" if isinstance(line, bytes) else "\r\n") not in (b"\\.", "\\.")
            continue
        for item in lexer.feed(line.decode("utf-8", "replace") if isinstance(line, bytes) else line):
            yield item
            in_copy = in_copy or (not isinstance(item, MetaCommand) and is_copy_from_stdin(item))
    yield from lexer.finish()


def split_text(text: str) -> Iterator[Statement | MetaCommand]:
    """`statements` of a whole text."""
    return statements(line for line in re.split(r"(?<=\n)", text) if line)


PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_$]*")


def shown_role(name: str) -> str:
    """A role's name for a message: as it is when plain, else quoted as SQL quotes it, with control
    characters escaped, so a message stays one line."""
    if PLAIN_NAME.fullmatch(name):
        return name
    quoted = '"' + name.replace('"', '""') + '"'
    return quoted if quoted.isprintable() else repr(quoted)[1:-1]


def names(roles: Iterable[str]) -> str:
    """'a, "B", c': roles for a message."""
    return ", ".join(shown_role(role) for role in roles)
