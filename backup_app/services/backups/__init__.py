"""The backups themselves: made, listed, read back, restored, downloaded, deleted."""
