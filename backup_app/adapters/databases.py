"""Database-level work on a PostgreSQL server, over psycopg from its maintenance database:
what a database is like (owner, encoding, locale, settings, grants), making a new one like
it, whether this role may replace it, ending its sessions, swapping two by renaming, dropping.
"""
import logging
import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..errors import RestoreFailed
from .postgres import ConnInfo, connect

log = logging.getLogger(__name__)
# Settings whose values are lists of quoted names: each element is given as its own literal
# (as pg_dump does), or `"$user", public` would become one schema called that.
LIST_QUOTED_SETTINGS = {"local_preload_libraries", "search_path", "session_preload_libraries",
                        "shared_preload_libraries", "temp_tablespaces", "unix_socket_directories"}
LOCALE_PROVIDERS = {"c": "libc", "i": "icu", "b": "builtin"}
# The sessions that must end before a database can be renamed (autovacuum workers, which have
# no user, are stopped by the server itself). A role that is not a superuser sees no
# backend_type for other roles' sessions: those are clients too.
SESSIONS_SQL = """
SELECT a.pid, a.usename, r.rolsuper, pg_has_role(current_user, a.usesysid, 'MEMBER')
FROM pg_stat_activity a JOIN pg_roles r ON r.oid = a.usesysid
WHERE a.datname = %s AND a.pid <> pg_backend_pid()
      AND coalesce(a.backend_type, 'client backend') IN ('client backend', 'walsender')
"""
ROLE_SQL = """
SELECT current_user, rolsuper, rolcreatedb, pg_has_role(current_user, 'pg_signal_backend', 'MEMBER')
FROM pg_roles WHERE rolname = current_user
"""
SHAPE_SQL = """
SELECT to_jsonb(d), pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), t.spcname,
       shobj_description(d.oid, 'pg_database'), d.datacl IS NULL
FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE d.datname = %s
"""
SETTINGS_SQL = """
SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END, c.setting
FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase,
     unnest(s.setconfig) WITH ORDINALITY AS c(setting, n)
WHERE d.datname = %s ORDER BY s.setrole, c.n
"""
GRANTS_SQL = """
SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END, a.privilege_type, a.is_grantable
FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = %s ORDER BY 1 NULLS FIRST, 2
"""


@dataclass(frozen=True)
class DatabaseShape:
    """What a database is, apart from its contents: what a replacement must have too."""

    name: str
    owner: str
    encoding: str
    collate: str
    ctype: str
    locale_provider: str | None  # 'c', 'i' or 'b' (PostgreSQL 15+)
    locale: str | None           # the ICU or builtin locale (PostgreSQL 15+)
    icu_rules: str | None        # PostgreSQL 16+
    tablespace: str
    connection_limit: int
    allow_connections: bool
    settings: tuple[tuple[str | None, str], ...]           # (role, or None for everyone; "name=value")
    grants: tuple[tuple[str | None, str, bool], ...] | None  # (grantee or None for PUBLIC, privilege,
    comment: str | None                                      # grantable); None: the default privileges


@dataclass(frozen=True)
class Swap:
    """How a swap went: how long the database was unavailable, and how many sessions were ended."""

    seconds: float
    sessions_ended: int


def identifier_bytes(name: str, limit: int = 63) -> str:
    """`name` cut to PostgreSQL's identifier limit of 63 bytes, on a character boundary."""
    encoded = name.encode()
    return name if len(encoded) <= limit else encoded[:limit].decode(errors="ignore")


def split_setting_list(value: str) -> list[str]:
    """The elements of a list setting as stored (`"$user", public, "My Schema"` → $user, public, My Schema)."""
    items, i = [], 0
    while i < len(value):
        while i < len(value) and value[i] in " ,":
            i += 1
        if i >= len(value):
            break
        if value[i] == '"':
            item, i = "", i + 1
            while i < len(value):
                if value[i] == '"' and value[i + 1:i + 2] == '"':
                    item, i = item + '"', i + 2
                elif value[i] == '"':
                    i += 1
                    break
                else:
                    item, i = item + value[i], i + 1
        else:
            end = value.find(",", i)
            end = len(value) if end < 0 else end
            item, i = value[i:end].strip(), end
        items.append(item)
    return items


def set_clause(setting: str) -> sql.Composed:
    """`SET name TO value` for a stored "name=value" setting."""
    name, _, value = setting.partition("=")
    values = split_setting_list(value) if name.lower() in LIST_QUOTED_SETTINGS else [value]
    return sql.SQL("SET {} TO {}").format(sql.Identifier(name), sql.SQL(", ").join(map(sql.Literal, values)))


class DatabaseServer:
    """The server of `conn`, reached through its maintenance database (`postgres`, or
    `template1` when `postgres` is the database being worked on). Each call connects anew."""

    def __init__(self, conn: ConnInfo):
        self.conn = conn

    def _connect(self, avoid: str | None = None) -> psycopg.Connection:
        maintenance = "template1" if avoid == "postgres" else "postgres"
        try:
            return connect(self.conn.with_dbname(maintenance), autocommit=True)
        except psycopg.Error as exc:
            raise RestoreFailed(f"cannot connect to {self.conn.with_dbname(maintenance).display()}: "
                                f"{str(exc).strip()}") from exc

    def exists(self, name: str) -> bool:
        with self._connect(name) as db:
            return db.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None

    def shape(self, name: str) -> DatabaseShape:
        """Owner, encoding, locale, tablespace, limits, settings, grants and comment of `name`."""
        with self._connect(name) as db:
            row, owner, encoding, tablespace, comment, default_acl = db.execute(SHAPE_SQL, (name,)).fetchone()
            settings = tuple(db.execute(SETTINGS_SQL, (name,)).fetchall())
            grants = None if default_acl else tuple(db.execute(GRANTS_SQL, (name,)).fetchall())
        return DatabaseShape(
            name=name, owner=owner, encoding=encoding, collate=row["datcollate"], ctype=row["datctype"],
            locale_provider=row.get("datlocprovider"), locale=row.get("datlocale") or row.get("daticulocale"),
            icu_rules=row.get("daticurules"), tablespace=tablespace, connection_limit=row["datconnlimit"],
            allow_connections=row["datallowconn"], settings=settings, grants=grants, comment=comment)

    def swap_problems(self, name: str) -> list[str]:
        """Why this role cannot build a database beside `name` and swap the two (empty: it can)."""
        with self._connect(name) as db:
            role, superuser, createdb, signals = db.execute(ROLE_SQL).fetchone()
            owns = db.execute("SELECT pg_has_role(current_user, datdba, 'MEMBER') FROM pg_database "
                              "WHERE datname = %s", (name,)).fetchone()[0]
            sessions = db.execute(SESSIONS_SQL, (name,)).fetchall()
        if superuser:
            return []
        problems = []
        if not createdb:
            problems.append(f"the role {role} cannot create databases (it needs CREATEDB)")
        if not owns:
            problems.append(f"the role {role} does not own {name}, so it cannot rename it")
        others = sorted({user for _pid, user, super_, own in sessions if super_ or not (signals or own)})
        if others:
            problems.append(f"the role {role} is not allowed to end the sessions of {', '.join(others)} on {name} "
                            "(it needs pg_signal_backend, and no role but a superuser may end a superuser's)")
        return problems

    def create(self, name: str, like: DatabaseShape | None = None) -> None:
        """CREATE DATABASE `name` from template0: empty, ready for a restore. Given `like`, with
        its owner, encoding, locale, tablespace, connection limit, settings, grants and comment."""
        statement = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
        if like is not None:
            statement += sql.SQL(" OWNER {} ENCODING {} LC_COLLATE {} LC_CTYPE {} CONNECTION LIMIT {}").format(
                sql.Identifier(like.owner), sql.Literal(like.encoding), sql.Literal(like.collate),
                sql.Literal(like.ctype), sql.Literal(like.connection_limit))
            if like.tablespace != "pg_default":  # naming pg_default needs CREATE on it; leaving it out does not
                statement += sql.SQL(" TABLESPACE {}").format(sql.Identifier(like.tablespace))
            if like.locale_provider:
                statement += sql.SQL(" LOCALE_PROVIDER {}").format(sql.SQL(LOCALE_PROVIDERS[like.locale_provider]))
            if like.locale_provider == "i":
                statement += sql.SQL(" ICU_LOCALE {}").format(sql.Literal(like.locale))
            elif like.locale_provider == "b":
                statement += sql.SQL(" BUILTIN_LOCALE {}").format(sql.Literal(like.locale))
            if like.icu_rules:
                statement += sql.SQL(" ICU_RULES {}").format(sql.Literal(like.icu_rules))
        with self._connect(name) as db:
            self._execute(db, statement, f"creating the database {name}")
            if like is not None:
                try:
                    for statement in self._shape_statements(name, like):
                        self._execute(db, statement, f"giving {name} the settings and grants of {like.name}")
                except BaseException:
                    self.drop(name)
                    raise

    @staticmethod
    def _shape_statements(name: str, like: DatabaseShape) -> list[sql.Composable]:
        database = sql.Identifier(name)
        statements = []
        for role, setting in like.settings:
            target = (sql.SQL("ALTER ROLE {} IN DATABASE {} ").format(sql.Identifier(role), database) if role
                      else sql.SQL("ALTER DATABASE {} ").format(database))
            statements.append(target + set_clause(setting))
        if like.grants is not None:
            statements.append(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC, {}").format(
                database, sql.Identifier(like.owner)))
            for grantee, privilege, grantable in like.grants:
                statements.append(sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
                    sql.SQL(privilege), database, sql.Identifier(grantee) if grantee else sql.SQL("PUBLIC"),
                    sql.SQL(" WITH GRANT OPTION" if grantable else "")))
        if like.comment is not None:
            statements.append(sql.SQL("COMMENT ON DATABASE {} IS {}").format(database, sql.Literal(like.comment)))
        return statements

    @staticmethod
    def _execute(db: psycopg.Connection, statement: sql.Composable, doing: str) -> None:
        try:
            db.execute(statement)
        except psycopg.Error as exc:
            raise RestoreFailed(f"{doing} failed: {str(exc).strip()}") from exc

    def drop(self, name: str) -> None:
        """DROP DATABASE IF EXISTS `name`, ending its sessions first."""
        with self._connect(name) as db:
            if db.info.server_version >= 130000:
                statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            else:
                self._end_sessions(db, name)
                statement = sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name))
            self._execute(db, statement, f"dropping the database {name}")

    def swap(self, current: str, replacement: str, previous: str, like: DatabaseShape,
             timeout: float = 30) -> Swap:
        """Rename `current` to `previous` and `replacement` to `current`, in one transaction.

        New connections to `current` are refused first and its sessions ended (again, until the
        rename finds none for `timeout` seconds); if the swap cannot be done, `current` is left
        as it was, accepting connections again. Both end with `like`'s ALLOW_CONNECTIONS.
        """
        current_id, previous_id = sql.Identifier(current), sql.Identifier(previous)
        allow = sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}")
        with self._connect(current) as db:
            started = time.monotonic()
            self._execute(db, allow.format(current_id, sql.SQL("false")), f"refusing new connections to {current}")
            try:
                ended = self._rename_away(db, current, replacement, previous, started + timeout)
            except BaseException:
                try:
                    db.execute(allow.format(current_id, sql.SQL(str(like.allow_connections).lower())))
                except psycopg.Error:
                    log.exception("could not let %s accept connections again", current)
                raise
            seconds = time.monotonic() - started
            self._execute(db, allow.format(previous_id, sql.SQL(str(like.allow_connections).lower())),
                          f"letting {previous} accept connections again")
            if not like.allow_connections:
                self._execute(db, allow.format(current_id, sql.SQL("false")), f"closing {current} to connections")
        return Swap(seconds, ended)

    def _rename_away(self, db: psycopg.Connection, current: str, replacement: str, previous: str,
                     deadline: float) -> int:
        """End the sessions on `current` and do the two renames, retrying while sessions remain;
        how many sessions were ended."""
        ended = 0
        while True:
            ended += self._end_sessions(db, current)
            try:
                with db.transaction():
                    db.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                        sql.Identifier(current), sql.Identifier(previous)))
                    db.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                        sql.Identifier(replacement), sql.Identifier(current)))
                return ended
            except psycopg.errors.ObjectInUse as exc:
                if time.monotonic() > deadline:
                    raise RestoreFailed(f"sessions kept reconnecting to {current} ({str(exc).strip()})") from exc
                time.sleep(0.05)
            except psycopg.Error as exc:
                raise RestoreFailed(f"renaming {current} failed: {str(exc).strip()}") from exc

    def _end_sessions(self, db: psycopg.Connection, name: str) -> int:
        """Terminate every client session on `name`; how many there were."""
        pids = [pid for pid, *_ in db.execute(SESSIONS_SQL, (name,)).fetchall()]
        for pid in pids:
            try:
                db.execute("SELECT pg_terminate_backend(%s)", (pid,))
            except psycopg.errors.InsufficientPrivilege as exc:
                raise RestoreFailed(f"not allowed to end the sessions on {name}: {str(exc).strip()}") from exc
        return len(pids)
