"""What the services announce when it happens; other parts (notifications) subscribe.

Senders pass the catalog row as the sender (for a hole in the WAL archive, what the window found). `announce` calls every subscriber and logs, never
raises, what one of them raised: a broken subscriber must never fail the service that spoke.
"""
import logging

from blinker import Namespace, Signal

log = logging.getLogger(__name__)
events = Namespace()
backup_completed = events.signal("backup-completed")    # sender: the Backup
backup_failed = events.signal("backup-failed")          # sender: the Backup
verification_failed = events.signal("verification-failed")  # sender: the Verification
wal_receiver_failing = events.signal("wal-receiver-failing")  # sender: the WalReceiver, when it starts failing
wal_archive_hole = events.signal("wal-archive-hole")          # sender: the window's Archived, naming the hole
pitr_drill_failed = events.signal("pitr-drill-failed")        # sender: the Target
job_queued = events.signal("job-queued")                      # sender: the Job, once it is on the queue


def announce(signal: Signal, sender) -> None:
    """Tell `signal`'s subscribers about `sender`; a subscriber's exception is logged, not raised."""
    for receiver in signal.receivers_for(sender):
        try:
            receiver(sender)
        except Exception:  # noqa: BLE001
            log.exception("a subscriber to %s failed", signal.name)
