"""Which hosts the app may be made to reach: NOTIFY_ALLOWED_HOSTS for notifications (checked on
the URL when it is saved and when it is sent, and on every connection while it is sent) and
RESTORE_ALLOWED_HOSTS for restores (see services/backups/restore.py)."""
import contextlib
import contextvars
import socket
import sys
from collections.abc import Iterable, Iterator

from backup_app.errors import HostNotAllowed

# The hosts (and their addresses) the current notification may connect to; None: any.
_reachable: contextvars.ContextVar[frozenset[str] | None] = contextvars.ContextVar("reachable", default=None)
_refused: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("refused", default=None)
NAME_EVENTS = {"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"}
ADDRESS_EVENTS = {"socket.connect", "socket.sendto"}


def host_key(host: str) -> str:
    """A host as compared with a list: lower case, no trailing dot, no IPv6 brackets."""
    return host.strip().strip("[]").rstrip(".").lower()


def parse_hosts(text: str | None) -> tuple[str, ...] | None:
    """A comma (or space) separated list of hosts; None when `text` is unset or empty."""
    hosts = tuple(host_key(host) for host in (text or "").replace(",", " ").split())
    return hosts or None


def named_host(url: str) -> str | None:
    """The server an Apprise URL names (`json://HOST/…`, `mailto://user@HOST`, `ntfy://HOST/topic`),
    or None for a service at an address of its own (`slack://…`, `tgram://…`) or not a URL at all."""
    import apprise  # here, not at the top: it is heavy

    plugin = apprise.Apprise.instantiate(url)
    if plugin is None or "host" not in plugin.template_tokens or not plugin.host:
        return None
    return host_key(plugin.host)


def refused_urls(urls: Iterable[str], allowed: tuple[str, ...] | None) -> dict[str, str]:
    """URL → the host it names, for each URL naming a host that `allowed` (None: any) does not list."""
    if allowed is None:
        return {}
    named = {url: named_host(url) for url in urls}
    return {url: host for url, host in named.items() if host is not None and host not in allowed}


def check_notification_urls(urls: Iterable[str], allowed: tuple[str, ...] | None) -> None:
    """Raise HostNotAllowed naming every host the URLs name that NOTIFY_ALLOWED_HOSTS does not list."""
    refused = refused_urls(urls, allowed)
    if refused:
        raise HostNotAllowed(f"notification URLs may only reach {', '.join(allowed)} (NOTIFY_ALLOWED_HOSTS), "
                             f"not {', '.join(dict.fromkeys(refused.values()))}")


@contextlib.contextmanager
def connections_only_to(allowed: tuple[str, ...] | None) -> Iterator[list[str]]:
    """While in the block, this context (Apprise copies it into the threads it sends from) may
    resolve and connect only to `allowed` hosts and the addresses they resolve to now; anything
    else fails with PermissionError and is added to the list yielded. None: anywhere."""
    if allowed is None:
        yield []
        return
    refused: list[str] = []
    tokens = (_reachable.set(frozenset(allowed) | addresses_of(allowed)), _refused.set(refused))
    try:
        yield refused
    finally:
        _refused.reset(tokens[1])
        _reachable.reset(tokens[0])


def addresses_of(hosts: Iterable[str]) -> frozenset[str]:
    addresses = set()
    for host in hosts:
        with contextlib.suppress(OSError):
            addresses |= {info[4][0] for info in socket.getaddrinfo(host, None)}
    return frozenset(addresses)


def _guard(event: str, args: tuple) -> None:
    """The audit hook: outside `connections_only_to` it returns at once."""
    reachable = _reachable.get()
    if reachable is None or event not in NAME_EVENTS | ADDRESS_EVENTS:
        return
    where = args[0] if event in NAME_EVENTS else args[1]
    if isinstance(where, tuple):
        where = where[0]
    host = host_key(where.decode() if isinstance(where, bytes) else str(where))
    if host not in reachable:
        _refused.get().append(host)
        raise PermissionError(f"{host} is not in NOTIFY_ALLOWED_HOSTS")


sys.addaudithook(_guard)
