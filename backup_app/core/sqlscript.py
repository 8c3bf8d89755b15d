"""What psql would make of a plain SQL script, read as it streams.

A plain dump is restored by `psql`, which runs any backslash meta-command it meets outside a
string, a comment or a `COPY … FROM stdin` data block on THIS machine (`\\! cmd`, `\\o file`,
`\\copy … program`, `\\i`, `\\connect` …). ScriptScanner follows psql's own lexer (quotes, dollar
quotes, nested comments, parentheses, the BEGIN … END of SQL-standard function bodies, data blocks
ending at a line `\\.`) and refuses every meta-command but the `\\restrict KEY` / `\\unrestrict KEY`
lines pg_dump writes itself. Where two readings are possible it refuses too: a single-quoted string
whose closing quote follows an odd run of backslashes (read one way with
standard_conforming_strings on, another way with it off), a NUL byte, an over-long line.

`strict` (an import): the script must also look like SQL (each statement starts with an SQL
command) and be complete (not cut inside a statement, a string or a data block).
"""
import re

from backup_app.errors import NotADump

INITIAL, SQUOTE, DQUOTE, DOLLAR, COMMENT, DATA = "sql", "string", "identifier", "dollar-quote", "comment", "data"
ENDS_INSIDE = {SQUOTE: "a quoted string", DQUOTE: "a quoted identifier", DOLLAR: "a dollar-quoted string",
               COMMENT: "a /* comment */", DATA: "a COPY data block (no line \\. ends it)"}
LINE_MAX = 16 * 1024 * 1024  # longest line of SQL (not of COPY data) read

TOKEN = re.compile(rb"[ \t\n\r\f]+|--[^\r\n]*|[A-Za-z_\x80-\xff][A-Za-z_\x80-\xff0-9$]*|.", re.S)
DOLLAR_TAG = re.compile(rb"\$(?:[A-Za-z_\x80-\xff][A-Za-z_\x80-\xff0-9]*)?\$")
COMMENT_MARK = re.compile(rb"/\*|\*/")
DATA_END = re.compile(rb"(?m)^\\\.\r?\n")
OWN_META = re.compile(rb"\\(?:un)?restrict [A-Za-z0-9]{1,256}\r?\n?")
VERSION_COMMENT = re.compile(rb"-- Dumped (from database|by pg_dump) version (\d+(?:\.\d+)*)")

SQL_COMMANDS = frozenset(
    b"ABORT ALTER ANALYZE BEGIN CALL CHECKPOINT CLOSE CLUSTER COMMENT COMMIT COPY CREATE DEALLOCATE DECLARE "
    b"DELETE DISCARD DO DROP END EXECUTE EXPLAIN FETCH GRANT IMPORT INSERT LISTEN LOAD LOCK MERGE MOVE NOTIFY "
    b"PREPARE REASSIGN REFRESH REINDEX RELEASE RESET REVOKE ROLLBACK SAVEPOINT SECURITY SELECT SET SHOW START "
    b"TABLE TRUNCATE UNLISTEN UPDATE VACUUM VALUES WITH".split())
FUNCTION_WORDS = (b"create", b"function", b"procedure", b"or", b"replace")


class UnsafeScript(NotADump):
    """A plain SQL script that psql would read as more than SQL (a meta-command), or ambiguously."""


class ScriptScanner:
    """Feed a script's bytes in order (`feed`, then `close`); each returns the bytes to hand to psql:
    the same, less pg_dump's own `\\restrict`/`\\unrestrict` lines when `drop_own_restrict`.
    Raises UnsafeScript (or, when `strict`, NotADump) at the first problem. `versions` holds
    the server's and pg_dump's versions a pg_dump header states ("from", "by")."""

    def __init__(self, *, strict: bool = False, drop_own_restrict: bool = False):
        self.strict, self.drop_own_restrict = strict, drop_own_restrict
        self.state, self.tag, self.depth = INITIAL, b"", 0
        self.pending = b""
        self.mid_line = False  # within a data line already partly handed on
        self.line = 1  # of the start of `pending`, for messages
        self.statements = 0
        self.versions: dict[str, str] = {}
        self._new_statement()

    def _new_statement(self) -> None:
        self.first: bytes | None = None
        self.paren = self.begin = self.words = 0
        self.marks = ""  # psql's: c, o, r, f, p for CREATE OR REPLACE FUNCTION|PROCEDURE among the first 4 words
        self.previous_word: bytes | None = None
        self.copy_from_stdin = False

    # Feeding.
    def feed(self, data: bytes) -> bytes:
        if b"\x00" in data:
            raise NotADump(f"line {self.line} or after of the file holds a NUL byte: not a text script psql reads")
        self.pending += data
        out: list[bytes] = []
        while self.pending:
            if self.state == DATA:
                if not self._data(out):
                    break
                continue
            end = self.pending.rfind(b"\n") + 1
            if not end:
                if len(self.pending) > LINE_MAX:
                    raise NotADump(f"line {self.line} of the file is longer than {LINE_MAX // 2**20} MiB")
                break
            self._sql(end, out)
        return b"".join(out)

    def close(self) -> bytes:
        """The rest of the script; in `strict` mode, NotADump unless it is complete SQL."""
        out: list[bytes] = []
        if self.pending and self.state != DATA:
            self._sql(len(self.pending), out)
        if self.pending:  # the rest of a data block: psql ends it at the end of the script
            out.append(self.pending)
            self.pending = b""
        if self.strict:
            if self.state != INITIAL:
                raise NotADump(f"the SQL script ends inside {ENDS_INSIDE[self.state]}: it looks truncated")
            if self.first is not None:
                raise NotADump("the SQL script ends in the middle of a statement (no closing ;): "
                               "it looks truncated")
            if not self.statements:
                raise NotADump("the file holds no SQL statement: it is not a plain SQL dump")
        return b"".join(out)

    def _data(self, out: list[bytes]) -> bool:
        """Hand on COPY … FROM stdin data up to a line that is exactly \\. (as psql reads it); True
        once the block ended. A line that cannot be that one is handed on before it is complete."""
        start = 0
        if self.mid_line:
            start = self.pending.find(b"\n") + 1
            if not start:
                return self._hand_on(len(self.pending), out)
            self.mid_line = False
        match = DATA_END.search(self.pending, start)
        if match:
            self.state = INITIAL
            self._hand_on(match.end(), out)
            return True
        cut = max(start, self.pending.rfind(b"\n") + 1)
        tail = self.pending[cut:]
        if tail and tail not in (b"\\", b"\\.", b"\\.\r"):
            cut, self.mid_line = len(self.pending), True
        return self._hand_on(cut, out)

    def _hand_on(self, cut: int, out: list[bytes]) -> bool:
        taken, self.pending = self.pending[:cut], self.pending[cut:]
        self.line += taken.count(b"\n")
        out.append(taken)
        return False

    def _sql(self, end: int, out: list[bytes]) -> None:
        """Lex the complete lines pending[:end] as psql does, up to the start of a data block."""
        text, i = self.pending, 0
        self._dropped: list[tuple[int, int]] = []
        while i < end and self.state != DATA:
            if self.state == INITIAL:
                i = self._initial(text, i, end)
            elif self.state == SQUOTE:
                i = self._single_quoted(text, i, end)
            elif self.state == DQUOTE:
                close = text.find(b'"', i, end)
                if close < 0:
                    i = end
                elif text[close + 1:close + 2] == b'"':
                    i = close + 2
                else:
                    self.state, i = INITIAL, close + 1
            elif self.state == DOLLAR:
                close = text.find(self.tag, i, end)
                if close < 0:
                    i = end
                else:
                    self.state, i = INITIAL, close + len(self.tag)
            else:  # COMMENT
                match = COMMENT_MARK.search(text, i, end)
                if not match:
                    i = end
                else:
                    i = match.end()
                    if match.group() == b"/*":
                        self.depth += 1
                    elif self.depth:
                        self.depth -= 1
                    else:
                        self.state = INITIAL
        kept = 0
        for start, stop in self._dropped:
            out.append(text[kept:start])
            kept = stop
        out.append(text[kept:i])
        self.line += text.count(b"\n", 0, i)
        self.pending = text[i:]

    def _single_quoted(self, text: bytes, i: int, end: int) -> int:
        close = text.find(b"'", i, end)
        if close < 0:
            return end
        run = close
        while run > i and text[run - 1] == 0x5C:  # backslashes before the quote
            run -= 1
        if run < close and ((close - run) % 2 or (run > 0 and text[run - 1] >= 0x80)):
            raise self._unsafe(text, close, "has a quoted string whose quote follows a backslash (psql reads it "
                                            "one way with standard_conforming_strings on, another with it off)")
        if text[close + 1:close + 2] == b"'":
            return close + 2
        self.state = INITIAL
        return close + 1

    def _initial(self, text: bytes, i: int, end: int) -> int:
        match = TOKEN.match(text, i, end)
        token = match.group()
        if token[:1] in b" \t\n\r\f":
            return match.end()
        if token.startswith(b"--"):
            if len(self.versions) < 2 and (found := VERSION_COMMENT.match(token)):
                self.versions.setdefault("from" if found[1] == b"from database" else "by", found[2].decode())
            return match.end()
        if len(token) > 1 or token.isalpha() or token == b"_" or token >= b"\x80":
            self._word(token, text, i)
            return match.end()
        if token == b"/" and text[i + 1:i + 2] == b"*":  # a comment: no token of the statement
            self.state, self.depth = COMMENT, 0
            return i + 2
        self.previous_word = None
        if token == b"\\":
            return self._meta(text, i, end)
        if self.first is None and token != b";":
            self._start(token, text, i)
        if token == b"'":
            self.state = SQUOTE
        elif token == b'"':
            self.state = DQUOTE
        elif token == b"$" and (tag := DOLLAR_TAG.match(text, i, end)):
            self.state, self.tag = DOLLAR, tag.group()
            return tag.end()
        elif token == b"(":
            self.paren += 1
        elif token == b")":
            self.paren = max(self.paren - 1, 0)
        elif token == b";" and not self.paren and not self.begin:
            return self._statement_end(text, i + 1, end)
        return match.end()

    def _start(self, token: bytes, text: bytes, at: int) -> None:
        """The first token of a statement: an SQL command, when `strict`."""
        if self.strict and token.upper() not in SQL_COMMANDS:
            raise self._unsafe(text, at, "does not start an SQL command: it is not a plain SQL dump", NotADump)
        self.first = token

    def _word(self, word: bytes, text: bytes, i: int) -> None:
        """An identifier or keyword: the statement's command, COPY … FROM stdin, and psql's tracking of
        BEGIN … END in `CREATE [OR REPLACE] FUNCTION|PROCEDURE` (whose semicolons end no statement)."""
        lower = word.lower()
        if self.first is None:
            self._start(word, text, i)
        if self.words < 4:
            self.marks += lower[:1].decode("latin-1") if lower in FUNCTION_WORDS else "."
        self.words += 1
        if not self.paren and (self.marks[:2] in ("cf", "cp") or self.marks in ("corf", "corp")):
            if lower == b"begin" or (lower == b"case" and self.begin):
                self.begin += 1
            elif lower == b"end" and self.begin:
                self.begin -= 1
        if (lower == b"stdin" and self.previous_word == b"from" and not self.paren
                and self.first.upper() == b"COPY"):
            self.copy_from_stdin = True
        self.previous_word = lower

    def _statement_end(self, text: bytes, after: int, end: int) -> int:
        self.statements += self.first is not None
        to_data = self.copy_from_stdin
        self._new_statement()
        if not to_data:
            return after
        line_end = text.find(b"\n", after, end)
        line_end = end if line_end < 0 else line_end + 1
        if text[after:line_end].strip():
            raise self._unsafe(text, after, "has more after a COPY … FROM stdin on its line (psql reads it "
                                            "after the data block)")
        self.state = DATA
        return line_end

    def _meta(self, text: bytes, i: int, end: int) -> int:
        """pg_dump's own `\\restrict KEY` line (dropped when asked), else UnsafeScript."""
        line_end = text.find(b"\n", i, end)
        line_end = end if line_end < 0 else line_end + 1
        at_line_start = i == 0 or text[i - 1:i] == b"\n"
        if at_line_start and self.first is None and OWN_META.fullmatch(text, i, line_end):
            if self.drop_own_restrict:
                self._dropped.append((i, line_end))
            return line_end
        raise self._unsafe(text, i, "has a psql meta-command, which psql would run on this machine")

    def _unsafe(self, text: bytes, at: int, what: str, error: type[NotADump] = UnsafeScript) -> NotADump:
        start = text.rfind(b"\n", 0, at) + 1
        stop = text.find(b"\n", at)
        snippet = text[start:stop if stop >= 0 else len(text)][:80].decode("latin-1")
        line = self.line + text.count(b"\n", 0, at)
        return error(f"line {line} of the SQL script {what}: {snippet!r}; refused")


class GuardedScript:
    """A plain script on its way to psql, read through a ScriptScanner (UnsafeScript at the first
    meta-command) and, when `restrict_key` is given, behind a `\\restrict KEY` line of its own: psql
    then refuses every meta-command the scanner might have missed. pg_dump's own `\\restrict` lines
    are left out (psql refuses a second `\\restrict`, and the dump's `\\unrestrict` would lift ours)."""

    def __init__(self, source, restrict_key: str | None):
        self._source = source
        self._scanner = ScriptScanner(drop_own_restrict=True)
        self._buffer = f"\\restrict {restrict_key}\n".encode() if restrict_key else b""
        self._done = False

    def read(self, size: int = -1) -> bytes:
        while not self._done and (size < 0 or len(self._buffer) < size):
            chunk = self._source.read(size if size > 0 else 1024 * 1024)
            if chunk:
                self._buffer += self._scanner.feed(chunk)
            else:
                self._buffer += self._scanner.close()
                self._done = True
        if size < 0:
            size = len(self._buffer)
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data
