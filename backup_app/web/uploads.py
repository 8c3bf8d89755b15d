"""Uploaded dumps: the import paths take bodies up to IMPORT_MAX_BYTES (every other path keeps
MAX_CONTENT_LENGTH), and every uploaded file is streamed to a named temporary file on disk, never
held in memory, which the import reads by its path and which is removed when the request ends."""
import tempfile

from flask import Request, current_app

IMPORT_PATHS = ("/backups/import", "/api/backups/import")
FORM_FIELDS_BYTES = 64 * 1024  # room for the form's other fields beside the file


class AppRequest(Request):
    @property
    def max_content_length(self) -> int | None:
        if self._max_content_length is None and self.path in IMPORT_PATHS and current_app:
            return current_app.config["IMPORT_MAX_BYTES"] + FORM_FIELDS_BYTES
        return super().max_content_length

    @max_content_length.setter
    def max_content_length(self, value: int | None) -> None:
        self._max_content_length = value

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return tempfile.NamedTemporaryFile(prefix="backup_app-upload-")


def too_large_message() -> str | None:
    """What an import refused for its size is told (None: not an import)."""
    from flask import request

    from backup_app.core.formatting import human_size

    if request.path not in IMPORT_PATHS:
        return None
    return (f"The file is larger than an upload may be here ({human_size(current_app.config['IMPORT_MAX_BYTES'])}, "
            "IMPORT_MAX_BYTES): import it on the server with `flask backup import FILE --database NAME`, "
            "or raise IMPORT_MAX_BYTES.")
