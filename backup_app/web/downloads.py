"""The download response shared by the pages and the API: streamed, never loaded whole."""
from flask import Response, stream_with_context

from backup_app import wiring
from backup_app.extensions import db
from backup_app.services.backups.copies import content_type
from backup_app.services.backups.download import open_backup_stream


def download_response(backup_id: str) -> Response:
    """Stream a completed backup as an attachment named after its file.

    Errors before the first byte (not found, no copy readable) raise as usual; a copy that
    turns out corrupt at the end is cut off before its last chunk (see BackupStream).
    """
    stream = open_backup_stream(db.session, backup_id, wiring.local_storage(), wiring.s3_stores())
    file = stream.file  # plain values: no catalog transaction is open while the bytes stream
    response = Response(stream_with_context(stream), mimetype=content_type(file))
    response.headers.set("Content-Disposition", "attachment", filename=file.filename)
    if file.size_bytes is not None:
        response.content_length = file.size_bytes
    response.call_on_close(stream.close)
    return response
