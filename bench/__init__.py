"""`make bench`: backup, restore, memory and page speed of backup_app beside bare pg_dump.

Every figure comes from one run on one machine: cases alternate round by round and the
ratios pair each case with its baseline from the same round, so a busy neighbour slows
both sides alike.
"""
