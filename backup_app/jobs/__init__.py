"""Background jobs: create, restore, verify, prune and sync run in a Huey worker or in a
command's own process, never inside a web request.

Each run has a Job row. A request (or the worker's scheduler) queues it; the worker claims it,
runs the same service function the CLI calls, and writes its phase, bytes done and log lines to
the row as the stream flows, for the pages and the API to poll. Every job holds a slot: its
target database (keyed on the server's identity, however the URL names it), its backup, or all
backups; the catalog allows one queued or running job per slot (a partial unique index).
"""
