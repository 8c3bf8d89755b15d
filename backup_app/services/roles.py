"""Creating roles from a globals dump (`pg_dumpall --globals-only` of a backed-up server) on a
server a restore goes to: the roles asked for that it lacks, and with them the missing roles
they are members of or have as members, so the memberships can be granted.

The dump came from another server and is untrusted: it is never given to psql (a meta-command
would run here). It is read as data (core/globals_sql) and each statement made anew from the
values — CREATE ROLE, ALTER ROLE … WITH, ALTER ROLE … SET, GRANT role TO role, COMMENT ON ROLE —
with names and values quoted by psycopg, all in one transaction: every role, or none. A role
setting that loads code (the preload libraries, dynamic_library_path) or that only a superuser may
set on this server is skipped, and said. A role that exists is never altered.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from psycopg import sql

from backup_app.adapters.databases import DatabaseServer
from backup_app.core.conninfo import ConnInfo
from backup_app.core.globals_sql import Globals, Membership, Role, parse_globals
from backup_app.core.sqltext import names, shown_role
from backup_app.errors import MissingRoles

# Settings that make a role's sessions load a library: never given from an untrusted dump.
LIBRARY_SETTINGS = frozenset({"session_preload_libraries", "local_preload_libraries", "shared_preload_libraries",
                              "dynamic_library_path"})
# A new role has these already: not said again (a role that is not a superuser may not even name
# SUPERUSER or REPLICATION, to set or to unset them, before PostgreSQL 16).
NEW_ROLE_DEFAULTS = frozenset({("NOSUPERUSER", None), ("NOCREATEDB", None), ("NOCREATEROLE", None),
                               ("INHERIT", None), ("NOLOGIN", None), ("NOREPLICATION", None),
                               ("NOBYPASSRLS", None), ("CONNECTION LIMIT", -1)})


@dataclass
class RolesReport:
    """What create_roles did: the roles it created and those that were there already (kept as they
    are), each by name; what it did not run, and why."""

    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The report for a job's log or the CLI."""
        lines = [f"roles created: {names(self.created) or 'none'}"]
        if self.existing:
            lines.append(f"roles kept as they were: {names(self.existing)}")
        lines += [f"skipped: {item}" for item in self.skipped]
        return lines


def related(found: Globals, roles: set[str], existing: set[str]) -> set[str]:
    """`roles` and every role of the dump missing from the server that is a member of one of them or
    has one as a member, again and again: the memberships between them can then be granted."""
    wanted, added = set(roles), True
    while added:
        added = False
        for membership in found.memberships:
            for one, other in ((membership.role, membership.member), (membership.member, membership.role)):
                if one in wanted and other not in wanted and other not in existing and other in found.roles:
                    wanted.add(other)
                    added = True
    return wanted


def setting_refused(name: str, contexts: dict[str, str]) -> str | None:
    """Why a role setting is not given (None: it is): it loads code, only a superuser may set it, or
    the server does not know it (a custom `extension.name` setting is given)."""
    key = name.lower()
    if key in LIBRARY_SETTINGS:
        return "it loads code"
    context = contexts.get(key)
    if context is None:
        return None if "." in key else "this server does not know the setting"
    if context != "user":
        return f"only a superuser may set it ({context} context)"
    return None


def role_statements(role: Role, contexts: dict[str, str]) -> tuple[list[sql.Composable], list[str]]:
    """The statements that make `role` (its attributes, settings and comment); what was skipped."""
    ident = sql.Identifier(role.name)
    statements: list[sql.Composable] = [sql.SQL("CREATE ROLE {}").format(ident)]
    options = [option for option in role.options if option not in NEW_ROLE_DEFAULTS]
    if options:
        statements.append(sql.SQL("ALTER ROLE {} WITH {}").format(ident, sql.SQL(" ").join(
            sql.SQL(keyword) if value is None and keyword != "PASSWORD" else
            sql.SQL("{} {}").format(sql.SQL(keyword), sql.Literal(value))
            for keyword, value in options)))
    skipped = []
    for name, values in role.settings:
        refused = setting_refused(name, contexts)
        if refused:
            skipped.append(f"the setting {name} of the role {shown_role(role.name)}: {refused}")
            continue
        statements.append(sql.SQL("ALTER ROLE {} SET {} TO {}").format(
            ident, sql.Identifier(*name.split(".")), sql.SQL(", ").join(map(sql.Literal, values))))
    if role.comment is not None:
        statements.append(sql.SQL("COMMENT ON ROLE {} IS {}").format(ident, sql.Literal(role.comment)))
    return statements, skipped


def grant_statement(membership: Membership, major: int) -> tuple[sql.Composable, str | None]:
    """GRANT role TO member with its options (PostgreSQL 16+ knows INHERIT and SET; an older server
    ADMIN OPTION only: the others are left out, and said)."""
    statement = sql.SQL("GRANT {} TO {}").format(sql.Identifier(membership.role), sql.Identifier(membership.member))
    if major >= 16 and membership.options:
        return statement + sql.SQL(" WITH ") + sql.SQL(", ").join(
            sql.SQL(f"{name.upper()} {'TRUE' if value else 'FALSE'}") for name, value in membership.options), None
    dropped = [name.upper() for name, _value in membership.options if name != "admin"]
    if dict(membership.options).get("admin"):
        statement += sql.SQL(" WITH ADMIN OPTION")
    note = (f"the {', '.join(dropped)} option of {shown_role(membership.member)}'s membership in "
            f"{shown_role(membership.role)}: PostgreSQL {major} does not know it") if dropped else None
    return statement, note


def create_roles(conn: ConnInfo, globals_sql: str, only: set[str] | None = None) -> RolesReport:
    """Create on `conn`'s server the roles of `globals_sql` it lacks: those of `only` (None: every
    role of the dump) and the missing roles related to them by membership (see the module's
    docstring). MissingRoles, creating nothing, when a role of `only` the server lacks is not in
    the dump; RestoreFailed, creating nothing, when the server refuses a statement."""
    found = parse_globals(globals_sql)
    server = DatabaseServer(conn)
    existing = server.role_names()
    wanted = set(found.roles) if only is None else set(only)
    absent = sorted(wanted - existing - set(found.roles))
    if absent:
        raise MissingRoles(f"the globals backup has no role {names(absent)}: it was made before they were, "
                           "or the role was not allowed to read them; create them by hand, or restore with "
                           "--no-owner")
    create = related(found, wanted - existing, existing)
    major, contexts = server.setting_contexts([name for role in create for name, _ in found.roles[role].settings])
    statements, skipped = [], list(found.ignored)
    for role in (role for role in found.roles.values() if role.name in create):
        made, refused = role_statements(role, contexts)
        statements += made
        skipped += refused
    present = existing | create
    for membership in dict.fromkeys(found.memberships):
        if (membership.role in create or membership.member in create) and \
                {membership.role, membership.member} <= present:
            statement, note = grant_statement(membership, major)
            statements.append(statement)
            skipped += [note] if note else []
    created = [role for role in found.roles if role in create]
    if statements:
        server.run_together(statements, f"creating the roles {names(created)}")
    return RolesReport(created, sorted((wanted | create) & existing), skipped)
