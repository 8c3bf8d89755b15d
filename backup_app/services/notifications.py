"""Notifications through Apprise (e-mail, Slack, Telegram, Discord, Teams, webhooks, …).

Told: every failed backup and failed verify, successful backups when NOTIFY_ON_SUCCESS (or the
target's own setting) asks, targets gone stale, and locations past their size limit. Each message goes to the global
NOTIFY_URLS plus the target's own URLs. Looking them up and sending run on a thread of its
own, so a slow or dead notification service (or catalog) never delays or fails a backup;
each send's outcome is written to the audit log (`notify` or `notify-failed`, actor `notifier`).
"""
import logging
import re
import threading

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from backup_app import wiring
from backup_app.core.formatting import duration, human_size, location_label
from backup_app.errors import ConfigurationError, NotificationFailed
from backup_app.extensions import db
from backup_app.models import AppSetting, Target
from backup_app.services import audit, events
from backup_app.services.allowed_hosts import check_notification_urls, connections_only_to, named_host, refused_urls
from backup_app.services.staleness import claim_stale_targets
from backup_app.services.storage_limits import OverLimit, claim_crossings, over_limits
from backup_app.services.targets import is_apprise_url, save_env_target
from backup_app.services.usage import storage_usage

log = logging.getLogger(__name__)
_threads: list[threading.Thread] = []


def split_urls(text: str | None) -> list[str]:
    return [url for url in re.split(r"[\s,]+", text or "") if url]


def send(urls: list[str], title: str, body: str, allowed_hosts: tuple[str, ...] | None = None) -> str | None:
    """Send one message to every URL now; None when it went, else why not. With `allowed_hosts`
    (NOTIFY_ALLOWED_HOSTS), a URL naming another host is not called, and no connection to
    another host is made (a service at an address of its own, an SMTP relay a URL names …)."""
    if not urls:
        return "no notification URLs configured (NOTIFY_URLS, the settings page's or the target's own)"
    import apprise  # here, not at the top: it adds ~17 MB to every process that never notifies

    refused = refused_urls(urls, allowed_hosts)
    sender = apprise.Apprise()
    invalid = [audit.redact(url) for url in urls if url not in refused and not sender.add(url)]
    if invalid:
        return f"not an Apprise URL: {', '.join(invalid)}"
    problems = [f"not sent to {host}: NOTIFY_ALLOWED_HOSTS does not list it"
                for host in sorted(set(refused.values()))]
    if len(sender):
        problems += deliver(sender, title, body, allowed_hosts)
    return "; ".join(problems) or None


def deliver(sender, title: str, body: str, allowed_hosts: tuple[str, ...] | None) -> list[str]:
    """Send through the Apprise `sender`, connecting only to `allowed_hosts`; what went wrong, if anything."""
    import apprise

    with apprise.LogCapture(level=logging.WARNING) as output, connections_only_to(allowed_hosts) as unlisted:
        delivered = sender.notify(title=title, body=body)
    if unlisted:
        return [f"not sent: it would connect to {', '.join(sorted(set(unlisted)))}, which NOTIFY_ALLOWED_HOSTS "
                "does not list"]
    return [] if delivered else [output.getvalue().strip() or "the notification service refused it"]


GLOBAL_URLS = "notify_urls"  # the AppSetting of the URLs set in the pages for every target
TEST_BODY = "If you can read this, notifications work."


def stored_global_urls(session: Session) -> list[str]:
    """The URLs for every target set in the pages (beside NOTIFY_URLS)."""
    setting = session.get(AppSetting, GLOBAL_URLS)
    return split_urls(setting.value if setting else None)


def global_urls(session: Session) -> list[str]:
    """Where news about every target goes: NOTIFY_URLS, then those set in the pages."""
    return split_urls(current_app.config.get("NOTIFY_URLS")) + stored_global_urls(session)


def set_global_urls(session: Session, urls: list[str], allowed_hosts: tuple[str, ...] | None) -> None:
    """Store the URLs for every target (none: forget them); each must be an Apprise URL naming a host
    that NOTIFY_ALLOWED_HOSTS lists."""
    invalid = [audit.redact(url) for url in urls if not is_apprise_url(url)]
    if invalid:
        raise ConfigurationError(f"not an Apprise notification URL: {', '.join(invalid)}")
    check_notification_urls(urls, allowed_hosts)
    setting = session.get(AppSetting, GLOBAL_URLS) or AppSetting(name=GLOBAL_URLS)
    setting.value = "\n".join(urls) or None
    session.add(setting)
    session.commit()


def describe_url(url: str) -> str:
    """What may be shown of a stored URL: its scheme and the host it names (`json://hooks.example.com`),
    never its path, user, password or token (`tgram://…`)."""
    scheme = url.split("://", 1)[0] if "://" in url else "?"
    host = named_host(url)
    return f"{scheme}://{host}" if host else f"{scheme}://…"


def send_test(urls: list[str], about: str) -> None:
    """Send a test message now; NotificationFailed says why it did not go."""
    error = send(urls, f"backup_app test message for {about}", TEST_BODY, wiring.notify_allowed_hosts())
    if error:
        raise NotificationFailed(f"test notification failed: {error}")


def urls_for(database: str, success: bool = False) -> list[str]:
    """Where news about `database` goes: NOTIFY_URLS, those set in the pages, and the target's own URLs."""
    config = current_app.config
    target = db.session.scalar(select(Target).where(Target.name == database))
    urls = []
    if not success or config.get("NOTIFY_ON_SUCCESS"):
        urls += global_urls(db.session)
    if target is not None and (not success or target.notify_on_success):
        urls += split_urls(target.notify_urls)
    return urls


def dispatch(database: str, title: str, body: str, *, success: bool = False) -> None:
    """Send news about `database` on a background thread, which also looks up where to (see
    `urls_for`), and audit the outcome; returns at once. Nothing here can fail the caller."""
    app = current_app._get_current_object()

    def run() -> None:
        with app.app_context():
            try:
                urls = urls_for(database, success)
                if not urls:
                    return
                error = send(urls, title, body, wiring.notify_allowed_hosts())
            except Exception as exc:  # noqa: BLE001 - a broken notifier is reported, never raised
                error = f"{type(exc).__name__}: {exc}"
            try:
                if error:
                    log.warning("notification about %s failed: %s", database, error)
                audit.record(db.session, "notifier", "notify-failed" if error else "notify", database,
                             detail=audit.failed(error) if error else f"{audit.OK}: {title}")
            except Exception:  # noqa: BLE001
                log.exception("could not audit a notification about %s", database)
            finally:
                db.session.remove()

    thread = threading.Thread(target=run, name="notify")
    _threads.append(thread)
    thread.start()


def wait_for_pending(timeout: float = 60) -> None:
    """Wait for notifications still being sent (for the CLI's exit and for tests)."""
    while _threads:
        _threads.pop().join(timeout)


@events.backup_failed.connect
def on_backup_failed(backup, **_) -> None:
    dispatch(backup.database, f"Backup of {backup.database} FAILED", f"{backup.filename}\n{backup.error}")


@events.backup_completed.connect
def on_backup_completed(backup, **_) -> None:
    failed = [c for c in backup.copies if c.status != "present"]
    if failed:  # completed, but not twice: that is news even when successes are not
        dispatch(backup.database, f"Backup of {backup.database} is missing a copy",
                 "\n".join(f"{c.location}: {c.status} ({c.error})" for c in failed))
        return
    dispatch(backup.database, f"Backup of {backup.database} completed",
             f"{backup.filename} ({backup.size_bytes} bytes)", success=True)


@events.verification_failed.connect
def on_verification_failed(verification, **_) -> None:
    backup = verification.backup
    dispatch(backup.database, f"Verify of a {backup.database} backup FAILED", f"{backup.filename}\n{verification.error}")


@events.wal_receiver_failing.connect
def on_wal_receiver_failing(receiver, **_) -> None:
    dispatch(receiver.target, f"WAL archiving of {receiver.target} is FAILING",
             f"{receiver.error}\nUntil it streams again, what is written is not recoverable to the moment.")


@events.wal_archive_hole.connect
def on_wal_archive_hole(archived, **_) -> None:
    dispatch(archived.target, f"WAL archive of {archived.target} has a hole", archived.problem())


@events.pitr_drill_failed.connect
def on_pitr_drill_failed(target, **_) -> None:
    dispatch(target.name, f"PITR drill of {target.name} FAILED", target.pitr_verify_error or "")


def alert_storage_limits() -> list[OverLimit]:
    """Tell about every location newly past its size limit (once per crossing); returns them."""
    locations = wiring.copy_locations()
    over = over_limits(storage_usage(db.session, locations), wiring.storage_alert_limits())
    crossed = claim_crossings(db.session, over)
    for item in crossed:
        name = location_label(item.location)
        dispatch(item.location, f"Storage {name} is past its size limit",
                 f"{name} holds {human_size(item.used)}, more than its limit of {human_size(item.limit)} "
                 "(STORAGE_ALERT_BYTES or the store's own). Prune, shorten retention or add space.")
    return crossed


def alert_stale_targets() -> list[dict]:
    """Tell about every target newly past its staleness limit; returns what was alerted."""
    alerts = []
    save_env_target(db.session, current_app.config.get("BACKUP_DATABASE_URL"))  # its alerts are kept in its row
    for stale in claim_stale_targets(db.session, current_app.config.get("STALE_AFTER_HOURS")):
        since = f"since {stale.last_success:%Y-%m-%d %H:%M} UTC" if stale.last_success else "ever"
        name = stale.target.name
        dispatch(name, f"No successful backup of {name} {since}",
                 f"{name} has had no successful backup for more than {duration(stale.limit.total_seconds())}.")
        alerts.append({"database": name, "last_success": stale.last_success.isoformat()
                       if stale.last_success else None, "limit_hours": stale.limit_hours})
    return alerts
