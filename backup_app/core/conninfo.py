"""Where a database lives: a postgresql:// URL parsed into libpq's terms.
"""
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from backup_app.errors import ConfigurationError

# Query parameters of a connection URL that map onto libpq environment variables.
LIBPQ_PARAMS = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
    "options": "PGOPTIONS",
    "host": "PGHOST",
    "port": "PGPORT",
    "user": "PGUSER",
    "password": "PGPASSWORD",
}

# The authentication requests libpq may answer (its `require_auth`): by default only a SCRAM
# exchange, which never sends the password itself, or none at all (a server that trusts the
# client is sent no password). One setting for the process: PG_REQUIRE_AUTH (`set_require_auth`).
DEFAULT_REQUIRE_AUTH = "scram-sha-256,none"
AUTH_METHODS = ("scram-sha-256", "md5", "password", "gss", "sspi", "none")
_require_auth = DEFAULT_REQUIRE_AUTH


def set_require_auth(methods: str) -> None:
    """Make every connection from now on answer only `methods` (a comma list of AUTH_METHODS)."""
    global _require_auth
    names = [name.strip() for name in methods.split(",") if name.strip()]
    unknown = [name for name in names if name not in AUTH_METHODS]
    if not names or unknown:
        raise ConfigurationError(f"PG_REQUIRE_AUTH lists {', '.join(unknown) or 'nothing'}: "
                                 f"give a comma list of {', '.join(AUTH_METHODS)}")
    _require_auth = ",".join(names)


def require_auth() -> str:
    """The authentication methods connections may answer, as libpq's require_auth value."""
    return _require_auth

# Seconds a client program waits for a server to answer its connection (the whole start-up, an
# unanswered one too), unless the URL sets its own connect_timeout.
CONNECT_TIMEOUT = 10


@dataclass(frozen=True)
class ConnInfo:
    """Where a database lives, parsed from a postgresql:// URL."""

    dbname: str
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    params: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_url(cls, url: str, default_dbname: str | None = None) -> "ConnInfo":
        """Parse `postgresql://user:pass@host:port/dbname?sslmode=…` (the dbname may be left out
        when there is a `default_dbname`: a server's URL)."""
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ConfigurationError("database URL must start with postgresql://")
        dbname = unquote(parts.path.lstrip("/")) or default_dbname
        if not dbname:
            raise ConfigurationError("database URL names no database (postgresql://…/DBNAME)")
        try:
            port = parts.port
        except ValueError as exc:
            raise ConfigurationError(f"database URL has a bad port: {exc}") from None
        params = tuple(parse_qsl(parts.query))
        unknown = sorted({k for k, _ in params} - LIBPQ_PARAMS.keys())
        if unknown:
            raise ConfigurationError(f"database URL has unsupported parameters: {', '.join(unknown)}")
        return cls(
            dbname=dbname,
            host=unquote(parts.hostname) if parts.hostname else None,
            port=port,
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            params=params,
        )

    def with_dbname(self, dbname: str) -> "ConnInfo":
        return ConnInfo(dbname, self.host, self.port, self.user, self.password, self.params)

    def env(self) -> dict[str, str]:
        """libpq environment variables for this connection: a connect timeout (CONNECT_TIMEOUT unless
        the URL sets one) and PGREQUIREAUTH, honoured by libpq 16 and newer and ignored by older ones
        (see PgClient.requires_auth)."""
        env = {"PGDATABASE": self.dbname, "PGCONNECT_TIMEOUT": str(CONNECT_TIMEOUT), "PGREQUIREAUTH": require_auth()}
        for key, value in (("PGHOST", self.host), ("PGPORT", self.port),
                           ("PGUSER", self.user), ("PGPASSWORD", self.password)):
            if value is not None:
                env[key] = str(value)
        for key, value in self.params:
            env[LIBPQ_PARAMS[key]] = value
        return env

    def keywords(self) -> dict[str, str]:
        """libpq connection keywords, for an in-process connection (psycopg)."""
        words = {"dbname": self.dbname}
        for name, value in (("host", self.host), ("port", self.port), ("user", self.user),
                            ("password", self.password)):
            if value is not None:
                words[name] = str(value)
        words.update(self.params)
        return words

    def display(self) -> str:
        """The URL without its password, for messages and pages."""
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"postgresql://{user}{self.host or 'localhost'}{port}/{self.dbname}"


def url_without_password(url: str) -> str:
    """`url` with no password in it (neither `user:password@` nor `?password=`), to show it back;
    "" when it cannot be parsed."""
    try:
        parts = urlsplit(url)
        userinfo, at, hostport = parts.netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}@{hostport}" if at else hostport
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "password"])
    except ValueError:
        return ""
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def identifier_bytes(name: str, limit: int = 63) -> str:
    """`name` cut to PostgreSQL's identifier limit of 63 bytes, on a character boundary."""
    encoded = name.encode()
    return name if len(encoded) <= limit else encoded[:limit].decode(errors="ignore")
