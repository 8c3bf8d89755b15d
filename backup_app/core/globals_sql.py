"""A globals dump (`pg_dumpall --globals-only`) read as data: each role with its attributes,
settings and comment, and the memberships. Only the statement kinds pg_dumpall writes for roles
are understood — CREATE ROLE, ALTER ROLE … WITH / SET, GRANT role TO role, COMMENT ON ROLE —
each taken from its tokens into values, never kept as text; everything else (tablespaces,
meta-commands, anything a hostile server slipped in) is listed in `ignored`, described by its
leading keywords only. Session settings at the top (`SET client_encoding …`) and pg_dumpall's own
`\\restrict`/`\\unrestrict` lines are passed over without a word.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from backup_app.core.sqltext import IDENT, NUMBER, OP, STRING, WORD, MetaCommand, Statement, Token, split_text

FLAGS = frozenset({"superuser", "nosuperuser", "createdb", "nocreatedb", "createrole", "nocreaterole", "inherit",
                   "noinherit", "login", "nologin", "replication", "noreplication", "bypassrls", "nobypassrls"})
QUIET_META = frozenset({"\\restrict", "\\unrestrict", "\\connect"})
MEMBERSHIP_OPTIONS = ("admin", "inherit", "set")
NOT_NAMES = frozenset({"public", "all", "current_user", "session_user", "current_role", "none", "user"})


class NotUnderstood(ValueError):
    """A statement of a known kind that does not have the shape pg_dumpall gives it."""


@dataclass
class Role:
    """One role of the dump: `options` as (keyword, value) pairs — a flag such as LOGIN with None,
    CONNECTION LIMIT with an int, PASSWORD and VALID UNTIL with a str (PASSWORD may be None: NULL);
    `settings` as (name, values) of `ALTER ROLE … SET`; its comment."""

    name: str
    options: list[tuple[str, str | int | None]] = field(default_factory=list)
    settings: list[tuple[str, list[str]]] = field(default_factory=list)
    comment: str | None = None


@dataclass(frozen=True)
class Membership:
    """`GRANT role TO member` with its options (admin, inherit, set: True or False, when given)."""

    role: str
    member: str
    options: tuple[tuple[str, bool], ...] = ()


@dataclass
class Globals:
    roles: dict[str, Role] = field(default_factory=dict)
    memberships: list[Membership] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def role(self, name: str) -> Role:
        return self.roles.setdefault(name, Role(name))


class Tokens:
    """A statement's tokens read front to back."""

    def __init__(self, statement: Statement):
        self.tokens, self.at = statement, 0

    def peek(self, offset: int = 0) -> Token | None:
        at = self.at + offset
        return self.tokens[at] if at < len(self.tokens) else None

    def word(self, *words: str) -> bool:
        """Take the next token if it is one of `words`."""
        token = self.peek()
        if token is not None and token.is_word(*words):
            self.at += 1
            return True
        return False

    def expect(self, *words: str) -> str:
        token = self.peek()
        if token is None or not token.is_word(*words):
            raise NotUnderstood(f"expected {' or '.join(words).upper()}")
        self.at += 1
        return token.value

    def op(self, value: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == OP and token.value == value:
            self.at += 1
            return True
        return False

    def name(self) -> str:
        """A role's name: an unquoted word or a quoted identifier (not PUBLIC, ALL, CURRENT_USER …)."""
        token = self.peek()
        if token is None or token.kind not in (WORD, IDENT) or not token.value or (
                token.kind == WORD and token.value in NOT_NAMES):
            raise NotUnderstood("expected a role's name")
        self.at += 1
        return token.value

    def own_name(self) -> str:
        """The name of a role the statement defines (a built-in `pg_*` role is the server's own)."""
        name = self.name()
        if name.startswith("pg_"):
            raise NotUnderstood("a built-in role")
        return name

    def string(self, null: bool = False) -> str | None:
        token = self.peek()
        if null and token is not None and token.is_word("null"):
            self.at += 1
            return None
        if token is None or token.kind != STRING:
            raise NotUnderstood("expected a string literal")
        self.at += 1
        return token.value

    def integer(self) -> int:
        negative = self.op("-")
        token = self.peek()
        if token is None or token.kind != NUMBER or not token.value.isdigit():
            raise NotUnderstood("expected a number")
        self.at += 1
        return -int(token.value) if negative else int(token.value)

    def end(self) -> None:
        if self.peek() is not None:
            raise NotUnderstood("unexpected words at the end")


def role_options(tokens: Tokens) -> list[tuple[str, str | int | None]]:
    """The attributes of CREATE ROLE / ALTER ROLE … [WITH], up to the statement's end."""
    tokens.word("with")
    options: list[tuple[str, str | int | None]] = []
    while tokens.peek() is not None:
        if tokens.word("connection"):
            tokens.expect("limit")
            options.append(("CONNECTION LIMIT", tokens.integer()))
        elif tokens.word("encrypted", "password"):
            if tokens.tokens[tokens.at - 1].value == "encrypted":
                tokens.expect("password")
            options.append(("PASSWORD", tokens.string(null=True)))
        elif tokens.word("valid"):
            tokens.expect("until")
            options.append(("VALID UNTIL", tokens.string()))
        elif tokens.peek() is not None and tokens.peek().kind == WORD and tokens.peek().value in FLAGS:
            options.append((tokens.peek().value.upper(), None))
            tokens.at += 1
        else:
            raise NotUnderstood("an attribute it does not know")
    return options


def setting(tokens: Tokens) -> tuple[str, list[str]]:
    """`name TO value, …` (or `=`) of ALTER ROLE … SET: the name (dotted for a custom setting) and values."""
    parts = [tokens.name()]
    while tokens.op("."):
        parts.append(tokens.name())
    if not (tokens.word("to") or tokens.op("=")):
        raise NotUnderstood("expected TO or =")
    values = []
    while True:
        token = tokens.peek()
        if token is None or token.kind not in (STRING, NUMBER, WORD, IDENT) or token.is_word("default"):
            raise NotUnderstood("expected a value")
        values.append(token.value)
        tokens.at += 1
        if not tokens.op(","):
            break
    tokens.end()
    return ".".join(parts), values


def membership_options(tokens: Tokens) -> tuple[tuple[str, bool], ...]:
    """`WITH ADMIN OPTION` (any version) or `WITH ADMIN TRUE, INHERIT FALSE, …` (PostgreSQL 16+)."""
    if not tokens.word("with"):
        return ()
    options = []
    while True:
        name = tokens.expect(*MEMBERSHIP_OPTIONS)
        value = tokens.expect("option", "true", "false")
        options.append((name, value != "false"))
        if not tokens.op(","):
            return tuple(options)


def read_statement(found: Globals, statement: Statement) -> None:
    """Add what one statement says to `found` (NotUnderstood when it is no role statement, or does
    not have the shape pg_dumpall gives its kind); nothing is added from a statement not understood."""
    tokens = Tokens(statement)
    if tokens.word("create") and tokens.word("role"):
        name = tokens.own_name()
        options = role_options(tokens)
        found.role(name).options += options
    elif tokens.at == 0 and tokens.word("alter") and tokens.word("role", "user"):
        name = tokens.own_name()
        if tokens.word("set"):
            value = setting(tokens)
            found.role(name).settings.append(value)
        elif tokens.peek() is not None and tokens.peek().is_word("in", "reset", "rename"):
            raise NotUnderstood("not an attribute or a setting of the role itself")
        else:
            options = role_options(tokens)
            found.role(name).options += options
    elif tokens.at == 0 and tokens.word("grant"):
        found.memberships += memberships(tokens)
    elif tokens.at == 0 and tokens.word("comment") and tokens.word("on") and tokens.word("role"):
        name = tokens.own_name()
        tokens.expect("is")
        comment = tokens.string(null=True)
        tokens.end()
        found.role(name).comment = comment
    else:
        raise NotUnderstood("not a role statement")


def memberships(tokens: Tokens) -> list[Membership]:
    """`GRANT role, … TO member, … [WITH …] [GRANTED BY …]`, after GRANT; who granted it is left out
    (the restoring role grants it)."""
    if any(token.is_word("on") for token in tokens.tokens):
        raise NotUnderstood("a privilege on an object or a parameter, not a membership")
    roles = [tokens.name()]
    while tokens.op(","):
        roles.append(tokens.name())
    tokens.expect("to")
    members = [tokens.name()]
    while tokens.op(","):
        members.append(tokens.name())
    options = membership_options(tokens)
    if tokens.word("granted"):
        tokens.expect("by")
        tokens.name()
    tokens.end()
    return [Membership(role, member, options) for role in roles for member in members]


def leading_words(statement: Statement, count: int = 2) -> str:
    """The statement's first keywords, for a message (never a name or value from it)."""
    words = []
    for token in statement[:count]:
        if token.kind != WORD:
            break
        words.append(token.value.upper())
    return " ".join(words) or "a statement"


def parse_globals(text: str) -> Globals:
    """The roles and memberships of a globals dump (see the module's docstring)."""
    found = Globals()
    for item in split_text(text):
        if isinstance(item, MetaCommand):
            if item.name not in QUIET_META:
                found.ignored.append(f"a psql meta-command ({shown_meta(item.name)}): not run")
            continue
        if item[0].is_word("set", "reset"):
            continue  # the dump's session settings
        try:
            read_statement(found, item)
        except NotUnderstood as exc:
            found.ignored.append(f"{leading_words(item)} …: not run ({exc})")
    return found


def shown_meta(name: str) -> str:
    """A meta-command's name, cut short and printable."""
    return name[:20] if name[:20].isprintable() else repr(name[:20])
