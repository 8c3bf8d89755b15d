"""The roles a database dump names, and what for, read from its SQL (a plain dump, or what
`pg_restore --schema-only` prints of an archive) before anything is restored: owners (`ALTER …
OWNER TO`, `SET SESSION AUTHORIZATION`), grantees and grantors (GRANT/REVOKE of the ACL entries,
`ALTER DEFAULT PRIVILEGES FOR ROLE …`), and the roles of row security policies and user mappings.
PUBLIC, CURRENT_USER and the like, and the built-in `pg_*` roles, are not roles to create.
"""
from __future__ import annotations

from collections.abc import Iterable

from backup_app.core.sqltext import IDENT, STRING, WORD, MetaCommand, Statement, Token

OWNER, GRANT, POLICY, USER_MAPPING = "owner", "grant", "policy", "user mapping"
# What `--no-owner` (pg_restore --no-owner --no-acl) leaves out: roles needed only for these are not needed then.
OWNERSHIP_AND_GRANTS = frozenset({OWNER, GRANT})
NOT_ROLES = frozenset({"public", "current_user", "session_user", "current_role", "default", "none"})


def role_name(token: Token | None) -> str | None:
    """The role a token names, or None when it names none (PUBLIC, CURRENT_USER, a `pg_*` role)."""
    if token is None or token.kind not in (WORD, IDENT, STRING):
        return None
    if token.kind == WORD and token.value in NOT_ROLES:
        return None
    return None if token.value.startswith("pg_") else token.value


def top(statement: Statement) -> list[Token]:
    """The statement's tokens outside parentheses (an object's signature, a policy's expression)."""
    return [token for token in statement if token.depth == 0]


def index_of(tokens: list[Token], *words: str, start: int = 0) -> int:
    """Where the words stand in a row in `tokens` (from `start`), or -1."""
    for i in range(start, len(tokens) - len(words) + 1):
        if all(tokens[i + k].is_word(word) for k, word in enumerate(words)):
            return i
    return -1


def role_list(tokens: list[Token], start: int) -> list[str]:
    """The roles of a list `a, GROUP b, PUBLIC …` from `start`, up to what is not part of it."""
    roles, i = [], start
    while i < len(tokens):
        if tokens[i].is_word("group"):
            i += 1
        name = role_name(tokens[i]) if i < len(tokens) else None
        if name is not None:
            roles.append(name)
        if i + 1 < len(tokens) and tokens[i + 1].kind != WORD and tokens[i + 1].value == ",":
            i += 2
            continue
        break
    return roles


def grant_roles(tokens: list[Token]) -> list[str]:
    """Grantees (after TO, or FROM for REVOKE) and the grantor (GRANTED BY) of a GRANT or REVOKE."""
    keyword = "to" if tokens[0].is_word("grant") else "from"
    at = index_of(tokens, keyword)
    roles = role_list(tokens, at + 1) if at >= 0 else []
    by = index_of(tokens, "granted", "by")
    return roles + (role_list(tokens, by + 2) if by >= 0 else [])


def uses_of(statement: Statement) -> Iterable[tuple[str, str]]:
    """(role, what for) of each role one statement needs."""
    tokens = top(statement)
    first = tokens[0]
    if first.is_word("grant", "revoke"):
        yield from ((role, GRANT) for role in grant_roles(tokens))
    elif index_of(tokens, "alter", "default", "privileges") == 0:
        at = index_of(tokens, "for", "role")
        at = index_of(tokens, "for", "user") if at < 0 else at
        yield from ((role, GRANT) for role in (role_list(tokens, at + 2) if at >= 0 else []))
        inner = next((i for i, token in enumerate(tokens) if token.is_word("grant", "revoke")), None)
        if inner is not None:
            yield from ((role, GRANT) for role in grant_roles(tokens[inner:]))
    elif first.is_word("alter") and (at := index_of(tokens, "owner", "to")) >= 0:
        if (role := role_name(tokens[at + 2] if at + 2 < len(tokens) else None)) is not None:
            yield role, OWNER
    elif index_of(tokens, "set", "session", "authorization") == 0 and len(tokens) > 3:
        if (role := role_name(tokens[3])) is not None:
            yield role, OWNER
    elif index_of(tokens, "create", "policy") == 0 and (at := index_of(tokens, "to")) >= 0:
        yield from ((role, POLICY) for role in role_list(tokens, at + 1))
    elif index_of(tokens, "create", "user", "mapping", "for") == 0 and len(tokens) > 4:
        if not tokens[4].is_word("user") and (role := role_name(tokens[4])) is not None:  # USER: the current one
            yield role, USER_MAPPING


def roles_needed(items: Iterable[Statement | MetaCommand]) -> dict[str, set[str]]:
    """Each role the statements name, with what they need it for (OWNER, GRANT, POLICY, USER_MAPPING)."""
    needed: dict[str, set[str]] = {}
    for item in items:
        if isinstance(item, MetaCommand) or not top(item):
            continue
        for role, use in uses_of(item):
            needed.setdefault(role, set()).add(use)
    return needed


def required(needed: dict[str, set[str]], no_owner: bool = False) -> set[str]:
    """The roles a restore needs: all of them, or with `no_owner` those needed for more than
    ownership and grants (a policy's roles, a user mapping's)."""
    return {role for role, uses in needed.items() if not (no_owner and uses <= OWNERSHIP_AND_GRANTS)}
