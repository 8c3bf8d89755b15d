"""Database-level work on a PostgreSQL server, over psycopg from its maintenance database:
what a database is like (owner, encoding, locale, settings, grants), making a new one like
it, whether this role may replace it, ending its sessions, swapping two by renaming, dropping.
"""
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from backup_app.adapters.postgres import connect
from backup_app.core.conninfo import ConnInfo
from backup_app.errors import RestoreFailed

log = logging.getLogger(__name__)
MAINTENANCE_DATABASES = ("postgres", "template1")
# Settings whose values are lists of quoted names: each element is given as its own literal
# (as pg_dump does), or `"$user", public` would become one schema called that.
LIST_QUOTED_SETTINGS = {"local_preload_libraries", "search_path", "session_preload_libraries",
                        "shared_preload_libraries", "temp_tablespaces", "unix_socket_directories"}
LOCALE_PROVIDERS = {"c": "libc", "i": "icu", "b": "builtin"}
# The sessions that must end before a database can be renamed (autovacuum workers, which have
# no user, are stopped by the server itself): clients, WAL senders, and the workers of its
# subscriptions (apply, table sync; restarted by the server unless the subscription is disabled
# first). A role that is not a superuser sees no backend_type for other roles' sessions: those
# are clients too.
SESSIONS_SQL = """
SELECT a.pid, a.usename, r.rolsuper, pg_has_role(current_user, a.usesysid, 'MEMBER')
FROM pg_stat_activity a JOIN pg_roles r ON r.oid = a.usesysid
WHERE a.datname = %s AND a.pid <> pg_backend_pid()
      AND (coalesce(a.backend_type, 'client backend') IN ('client backend', 'walsender')
           OR a.backend_type LIKE 'logical replication %%worker')
"""
# A database's subscriptions (pg_subscription is shared: any database of the server can read it).
SUBSCRIPTIONS_SQL = """
SELECT s.subname, s.subenabled FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid
WHERE d.datname = %s ORDER BY 1
"""
# The enabled subscriptions of a database that the current role may not disable (only their owner may).
FOREIGN_SUBSCRIPTIONS_SQL = """
SELECT s.subname FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid
WHERE d.datname = %s AND s.subenabled AND NOT pg_has_role(current_user, s.subowner, 'MEMBER') ORDER BY 1
"""
LOGICAL_SLOTS_SQL = """
SELECT slot_name FROM pg_replication_slots WHERE database = %s AND slot_type = 'logical' ORDER BY 1
"""
# Whatever still holds a database that could not be renamed.
HOLDERS_SQL = """
SELECT format('pid %%s (%%s, %%s)', pid, coalesce(backend_type, 'session'), coalesce(usename, 'no user'))
FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()
UNION ALL
SELECT format('prepared transaction %%L', gid) FROM pg_prepared_xacts WHERE database = %s
"""
ROLE_SQL = """
SELECT current_user, rolsuper, rolcreatedb, rolcreaterole, pg_has_role(current_user, 'pg_signal_backend', 'MEMBER')
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
# Database settings only a superuser (or, from PostgreSQL 15, a role granted SET on them) may give.
SUPERUSER_SETTINGS_SQL = """
SELECT DISTINCT split_part(c.setting, '=', 1)
FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase, unnest(s.setconfig) AS c(setting)
JOIN pg_settings p ON p.name = lower(split_part(c.setting, '=', 1))
WHERE d.datname = %s AND s.setrole = 0 AND p.context = 'superuser'
      AND NOT (current_setting('server_version_num')::int >= 150000
               AND has_parameter_privilege(p.name, 'SET'))
ORDER BY 1
"""


# Every database but the templates: whether it takes connections, and whether this role may connect.
DATABASES_SQL = """
SELECT datname, datallowconn, has_database_privilege(oid, 'CONNECT')
FROM pg_database WHERE NOT datistemplate ORDER BY datname
"""


def list_databases(conn: ConnInfo) -> list[tuple[str, bool, bool]]:
    """(name, allows connections, this role may connect) of every database of `conn`'s server but
    the templates, asked of `conn`'s own database."""
    with server_errors(f"listing the databases of {conn.with_dbname('').display()}"), connect(conn) as db:
        return [tuple(row) for row in db.execute(DATABASES_SQL)]


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
    is_template: bool
    settings: tuple[tuple[str | None, str], ...]           # (role, or None for everyone; "name=value")
    grants: tuple[tuple[str | None, str, bool], ...] | None  # (grantee or None for PUBLIC, privilege,
    comment: str | None                                      # grantable); None: the default privileges


@dataclass(frozen=True)
class Swap:
    """How a swap went: how long the database was unavailable, how many sessions were ended, the
    subscriptions disabled to stop their workers (they stay disabled in the previous database),
    and what did not work out after the swap itself had succeeded."""

    seconds: float
    sessions_ended: int
    warnings: tuple[str, ...] = field(default=())
    subscriptions_disabled: tuple[str, ...] = field(default=())


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


def allow_connections(name: str, allow: bool) -> sql.Composed:
    return sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(sql.Identifier(name),
                                                                   sql.SQL("true" if allow else "false"))


@contextmanager
def server_errors(doing: str) -> Iterator[None]:
    """A psycopg error while `doing` something becomes RestoreFailed with the server's message."""
    try:
        yield
    except psycopg.Error as exc:
        raise RestoreFailed(f"{doing} failed: {str(exc).strip()}") from exc


class DatabaseServer:
    """The server of `conn`, reached through a maintenance database (`postgres`, else
    `template1`; never the database being worked on). Each call connects anew."""

    def __init__(self, conn: ConnInfo):
        self.conn = conn

    def _connect(self, avoid: str | None = None) -> psycopg.Connection:
        errors = []
        for maintenance in (name for name in MAINTENANCE_DATABASES if name != avoid):
            try:
                return connect(self.conn.with_dbname(maintenance), autocommit=True)
            except psycopg.Error as exc:
                errors.append(f"{maintenance}: {str(exc).strip()}")
        raise RestoreFailed(f"cannot connect to the maintenance database of {self.conn.with_dbname('').display()} "
                            f"({'; '.join(errors)})")

    def _connect_to(self, name: str) -> psycopg.Connection:
        """A connection to the database `name` itself (its subscriptions are altered only from there)."""
        return connect(self.conn.with_dbname(name), autocommit=True)

    def exists(self, name: str) -> bool:
        with self._connect(name) as db, server_errors(f"looking for the database {name}"):
            return db.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None

    def has_tablespace(self, name: str) -> bool:
        with self._connect() as db, server_errors(f"looking for the tablespace {name}"):
            return db.execute("SELECT 1 FROM pg_tablespace WHERE spcname = %s", (name,)).fetchone() is not None

    def role_names(self) -> set[str]:
        """The names of every role of the server."""
        with self._connect() as db, server_errors("listing the roles"):
            return {name for (name,) in db.execute("SELECT rolname FROM pg_roles")}

    def setting_contexts(self, names: list[str]) -> tuple[int, dict[str, str]]:
        """The server's major version, and pg_settings' context ('user', 'superuser', …) of each of
        `names` it knows, by name in lower case."""
        with self._connect() as db, server_errors("reading the server's settings"):
            found = dict(db.execute("SELECT name, context FROM pg_settings WHERE name = ANY(%s)",
                                    ([name.lower() for name in names],)).fetchall())
            return db.info.server_version // 10000, found

    def run_together(self, statements: list[sql.Composable], doing: str) -> None:
        """Run `statements` in one transaction: all of them, or (RestoreFailed) none."""
        with self._connect() as db, server_errors(doing), db.transaction():
            for statement in statements:
                db.execute(statement)

    def size(self, name: str) -> int | None:
        """pg_database_size of `name` (None: there is no such database)."""
        with self._connect(name) as db, server_errors(f"measuring the database {name}"):
            row = db.execute("SELECT pg_database_size(oid) FROM pg_database WHERE datname = %s", (name,)).fetchone()
            return row[0] if row else None

    def shape(self, name: str) -> DatabaseShape:
        """Owner, encoding, locale, tablespace, limits, settings, grants and comment of `name`."""
        with self._connect(name) as db, server_errors(f"reading what {name} is like"):
            found = db.execute(SHAPE_SQL, (name,)).fetchone()
            if found is None:
                raise RestoreFailed(f"the database {name} does not exist (any more)")
            row, owner, encoding, tablespace, comment, default_acl = found
            settings = tuple(db.execute(SETTINGS_SQL, (name,)).fetchall())
            grants = None if default_acl else tuple(db.execute(GRANTS_SQL, (name,)).fetchall())
        return DatabaseShape(
            name=name, owner=owner, encoding=encoding, collate=row["datcollate"], ctype=row["datctype"],
            locale_provider=row.get("datlocprovider"), locale=row.get("datlocale") or row.get("daticulocale"),
            icu_rules=row.get("daticurules"), tablespace=tablespace, connection_limit=row["datconnlimit"],
            allow_connections=row["datallowconn"], is_template=row["datistemplate"], settings=settings,
            grants=grants, comment=comment)

    def swap_problems(self, name: str) -> list[str]:
        """Why this role cannot build a database beside `name` and swap the two (empty: it can)."""
        with self._connect(name) as db, server_errors(f"checking what the role may do with {name}"):
            role, superuser, createdb, createrole, signals = db.execute(ROLE_SQL).fetchone()
            owns, template = db.execute("SELECT pg_has_role(current_user, datdba, 'MEMBER'), datistemplate "
                                        "FROM pg_database WHERE datname = %s", (name,)).fetchone()
            sessions = db.execute(SESSIONS_SQL, (name,)).fetchall()
            role_settings = db.execute("SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d "
                                       "ON d.oid = s.setdatabase WHERE d.datname = %s AND s.setrole <> 0",
                                       (name,)).fetchone()[0]
            superuser_settings = [setting for (setting,) in db.execute(SUPERUSER_SETTINGS_SQL, (name,))]
            foreign_subscriptions = [sub for (sub,) in db.execute(FOREIGN_SUBSCRIPTIONS_SQL, (name,))]
        problems = [f"{name} is a template database"] if template else []
        if superuser:
            return problems
        if not createdb:
            problems.append(f"the role {role} cannot create databases (it needs CREATEDB)")
        if not owns:
            problems.append(f"the role {role} does not own {name}, so it cannot rename it")
        others = sorted({user for _pid, user, super_, own in sessions if super_ or not (signals or own)})
        if others:
            problems.append(f"the role {role} is not allowed to end the sessions of {', '.join(others)} on {name} "
                            "(it needs pg_signal_backend, and no role but a superuser may end a superuser's)")
        if role_settings and not createrole:
            problems.append(f"{name} has settings of other roles (ALTER ROLE … IN DATABASE), which the role "
                            f"{role} cannot give the new database (it needs CREATEROLE)")
        if superuser_settings:
            problems.append(f"only a superuser may give the new database the settings {', '.join(superuser_settings)}")
        if foreign_subscriptions:
            problems.append(f"the role {role} does not own the subscriptions {', '.join(foreign_subscriptions)} of "
                            f"{name}, so it cannot disable them to stop their apply workers for the swap")
        return problems

    def create(self, name: str, like: DatabaseShape | None = None) -> None:
        """CREATE DATABASE `name` from template0: empty, ready for a restore. Given `like`, with its
        owner, encoding, locale and tablespace; the rest of its shape comes with `give_shape`."""
        statement = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
        if like is not None:
            statement += sql.SQL(" OWNER {} ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
                sql.Identifier(like.owner), sql.Literal(like.encoding), sql.Literal(like.collate),
                sql.Literal(like.ctype))
            if like.locale_provider:
                statement += sql.SQL(" LOCALE_PROVIDER {}").format(sql.SQL(LOCALE_PROVIDERS[like.locale_provider]))
            if like.locale_provider == "i":
                statement += sql.SQL(" ICU_LOCALE {}").format(sql.Literal(like.locale))
            elif like.locale_provider == "b":
                statement += sql.SQL(" BUILTIN_LOCALE {}").format(sql.Literal(like.locale))
            if like.icu_rules:
                statement += sql.SQL(" ICU_RULES {}").format(sql.Literal(like.icu_rules))
            if like.tablespace != "pg_default":  # naming pg_default needs CREATE on it; leaving it out does not
                statement += sql.SQL(" TABLESPACE {}").format(sql.Identifier(like.tablespace))
        with self._connect(name) as db, server_errors(f"creating the database {name}"):
            db.execute(statement)

    def give_shape(self, name: str, like: DatabaseShape) -> None:
        """Give `name` the connection limit, settings, grants and comment of `like` (after the restore:
        a read-only default or a low connection limit would stop pg_restore itself)."""
        database = sql.Identifier(name)
        statements = [sql.SQL("ALTER DATABASE {} CONNECTION LIMIT {}").format(database,
                                                                             sql.Literal(like.connection_limit))]
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
        with self._connect(name) as db, server_errors(f"giving {name} the settings and grants of {like.name}"):
            for statement in statements:
                db.execute(statement)

    def subscriptions(self, name: str) -> list[tuple[str, bool]]:
        """(name, enabled) of each subscription in the database `name`."""
        with self._connect(name) as db, server_errors(f"listing the subscriptions of {name}"):
            return [(sub, enabled) for sub, enabled in db.execute(SUBSCRIPTIONS_SQL, (name,))]

    def logical_slots(self, name: str) -> list[str]:
        """The logical replication slots of the database `name` (they follow its oid, not its name)."""
        with self._connect(name) as db, server_errors(f"listing the replication slots of {name}"):
            return [slot for (slot,) in db.execute(LOGICAL_SLOTS_SQL, (name,))]

    def _enable_subscriptions(self, name: str, subscriptions: list[str], enable: bool) -> None:
        """ALTER SUBSCRIPTION … ENABLE (or DISABLE) each of `subscriptions` of the database `name`."""
        if not subscriptions:
            return
        action = sql.SQL("ENABLE" if enable else "DISABLE")
        with server_errors(f"{'enabling' if enable else 'disabling'} the subscriptions of {name}"), \
                self._connect_to(name) as db:
            for subscription in subscriptions:
                db.execute(sql.SQL("ALTER SUBSCRIPTION {} {}").format(sql.Identifier(subscription), action))

    @contextmanager
    def _subscriptions_stopped(self, name: str) -> Iterator[list[str]]:
        """Disable the enabled subscriptions of `name` (the server starts no worker for a disabled
        one); their names. Enabled again if what runs inside fails."""
        disabled = [sub for sub, enabled in self.subscriptions(name) if enabled]
        self._enable_subscriptions(name, disabled, False)
        try:
            yield disabled
        except BaseException as exc:
            try:
                self._enable_subscriptions(name, disabled, True)
            except RestoreFailed as again:
                raise RestoreFailed(f"{exc}; and {again}: run ALTER SUBSCRIPTION … ENABLE in {name} for "
                                    f"{', '.join(disabled)}") from exc
            raise

    def _detach_subscriptions(self, name: str) -> None:
        """Drop the subscriptions of the database `name` without touching their publishers: each is
        disabled and its slot forgotten first (DROP SUBSCRIPTION would drop the slot on the publisher,
        which a copy of the subscription elsewhere, the one restored or the one replaced, may use)."""
        subscriptions = [sub for sub, _enabled in self.subscriptions(name)]
        if not subscriptions:
            return
        with server_errors(f"detaching the subscriptions of {name}"), self._connect_to(name) as db:
            for subscription in map(sql.Identifier, subscriptions):
                db.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(subscription))
                db.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(subscription))
                db.execute(sql.SQL("DROP SUBSCRIPTION {}").format(subscription))

    def drop(self, name: str) -> None:
        """DROP DATABASE IF EXISTS `name`, its subscriptions detached (a database that holds one
        cannot be dropped) and its sessions ended first."""
        self._detach_subscriptions(name)
        with self._connect(name) as db, server_errors(f"dropping the database {name}"):
            if db.info.server_version >= 130000:
                db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            else:
                self._end_sessions(db, name)
                db.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))

    def swap(self, current: str, replacement: str, previous: str, allow: bool = True, timeout: float = 30) -> Swap:
        """Rename `current` to `previous` and `replacement` to `current`, in one transaction.

        The enabled subscriptions of `current` are disabled (their apply workers would come back
        and hold it; they stay disabled in `previous`, which must not apply what the restored
        database's subscriptions may apply later). The sessions on `current` are ended and the
        renames tried at once; only if sessions come back is `current` closed to new connections
        (ALLOW_CONNECTIONS false) while it is tried again, for at most `timeout` seconds. If the
        swap cannot be done, `current` is as it was, its subscriptions enabled and open again
        (RestoreFailed says so if even that failed). Both end with ALLOW_CONNECTIONS `allow` (the
        current database's); a failure to set that after the swap is a warning.
        """
        started = time.monotonic()
        ended: set[int] = set()
        closed = False
        with self._subscriptions_stopped(current) as disabled, self._connect(current) as db:
            try:
                while not self._rename_away(db, current, replacement, previous, ended):
                    if time.monotonic() - started > timeout:
                        holders = [holder for (holder,) in db.execute(HOLDERS_SQL, (current, current))]
                        raise RestoreFailed(f"{current} was still in use after {timeout:g} s (by "
                                            f"{', '.join(holders) or 'sessions that kept reconnecting'}); "
                                            "nothing was changed")
                    if not closed:
                        with server_errors(f"refusing new connections to {current}"):
                            db.execute(allow_connections(current, False))
                        closed = True
                    time.sleep(0.05)
            except BaseException as exc:
                if closed:
                    self._reopen(current, allow, exc)
                raise
        seconds = time.monotonic() - started
        warnings = []
        # The previous one was closed for the swap; the new one must be closed if the old one was.
        for name, state in ([(previous, allow)] if closed else []) + ([(current, False)] if not allow else []):
            try:
                with self._connect(name) as db, server_errors(f"setting ALLOW_CONNECTIONS of {name}"):
                    db.execute(allow_connections(name, state))
            except RestoreFailed as exc:
                warnings.append(f"{exc}: run ALTER DATABASE {name} ALLOW_CONNECTIONS {str(state).lower()}")
        return Swap(seconds, len(ended), tuple(warnings), tuple(disabled))

    def _rename_away(self, db: psycopg.Connection, current: str, replacement: str, previous: str,
                     ended: set[int]) -> bool:
        """End the sessions on `current`, then do the two renames in one transaction; False while
        sessions remain (nothing was renamed). The pids ended are added to `ended`."""
        ended.update(self._end_sessions(db, current))
        try:
            with db.transaction():
                db.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(current), sql.Identifier(previous)))
                db.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(replacement), sql.Identifier(current)))
        except psycopg.errors.ObjectInUse:
            return False
        except psycopg.Error as exc:
            raise RestoreFailed(f"renaming {current} failed: {str(exc).strip()}") from exc
        return True

    def _reopen(self, name: str, allow: bool, cause: BaseException, attempts: int = 5) -> None:
        """Let `name` accept connections again after a swap that did not happen, from a new
        connection (the old one may be what broke), trying a few times."""
        for attempt in range(attempts):
            try:
                with self._connect(name) as db:
                    db.execute(allow_connections(name, allow))
                return
            except (psycopg.Error, RestoreFailed) as exc:
                error = exc
                time.sleep(0.2 * (attempt + 1))
        raise RestoreFailed(f"{cause}; and {name} could not be opened to connections again ({error}): run "
                            f"ALTER DATABASE {name} ALLOW_CONNECTIONS true") from cause

    def _end_sessions(self, db: psycopg.Connection, name: str) -> list[int]:
        """Terminate every client session on `name`; their pids."""
        pids = [pid for pid, *_ in db.execute(SESSIONS_SQL, (name,)).fetchall()]
        for pid in pids:
            try:
                db.execute("SELECT pg_terminate_backend(%s)", (pid,))
            except psycopg.errors.InsufficientPrivilege as exc:
                raise RestoreFailed(f"not allowed to end the sessions on {name}: {str(exc).strip()}") from exc
        return pids
