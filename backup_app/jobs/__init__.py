"""Background jobs: queued for the worker or run in a command's own process."""
