"""What the services announce when it happens; other parts (notifications) subscribe.

Senders pass the catalog row as the sender. A subscriber must never raise into a service.
"""
from blinker import Namespace

events = Namespace()
backup_completed = events.signal("backup-completed")    # sender: the Backup
backup_failed = events.signal("backup-failed")          # sender: the Backup
verification_failed = events.signal("verification-failed")  # sender: the Verification
