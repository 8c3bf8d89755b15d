"""Error pages and JSON errors: every service error becomes a one-line message with its status."""
from flask import Flask, current_app, g, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from backup_app.core.formatting import human_size
from backup_app.errors import (
    BackupError,
    BackupFileMissing,
    BackupNotFound,
    ConfigurationError,
    ConfirmationMismatch,
    InvalidBackupState,
    InvalidRequest,
    JobConflict,
    JobNotFound,
    LastAdmin,
    LeftoverNotFound,
    LoginFailed,
    ObjectNotFound,
    PitrError,
    QueueUnavailable,
    StorageUnavailable,
    TargetExists,
    TokenNotFound,
    TooManyLoginAttempts,
    UnknownDatabase,
    UnsafeFilename,
    UserExists,
    UserNotFound,
)
from backup_app.extensions import db

STATUS_CODES = {
    InvalidRequest: 400,
    ConfigurationError: 400,
    PitrError: 400,
    UnknownDatabase: 400,
    UnsafeFilename: 400,
    ConfirmationMismatch: 400,
    BackupNotFound: 404,
    JobNotFound: 404,
    LeftoverNotFound: 404,
    UserNotFound: 404,
    TokenNotFound: 404,
    UserExists: 409,
    LastAdmin: 409,
    TooManyLoginAttempts: 429,
    LoginFailed: 401,
    BackupFileMissing: 404,
    ObjectNotFound: 404,
    InvalidBackupState: 409,
    JobConflict: 409,
    TargetExists: 409,
    StorageUnavailable: 503,
    QueueUnavailable: 503,
}
TITLES = {400: "Bad request", 401: "Sign in first", 403: "Not allowed", 404: "Not found",
          409: "Conflict", 413: "Too large", 429: "Too many requests", 500: "Something went wrong", 503: "Unavailable"}


def status_code(exc: BackupError) -> int:
    """The HTTP status of a service error (500 for one not listed)."""
    return next((STATUS_CODES[cls] for cls in type(exc).__mro__ if cls in STATUS_CODES), 500)


def wants_json() -> bool:
    """Whether to answer with JSON: the API, or a client that asks for JSON first."""
    return (request.blueprint == "api" or request.path.startswith("/api/")
            or request.accept_mimetypes.best == "application/json")


def error_response(code: int, message: str):
    g.error_message = message  # the audit log's reason
    if wants_json():
        return jsonify(error=message), code
    return render_template("errors/error.html", code=code, title=TITLES.get(code, "Error"),
                           message=message), code


def register_errorhandlers(app: Flask) -> None:
    @app.errorhandler(BackupError)
    def service_error(exc: BackupError):
        db.session.rollback()
        return error_response(status_code(exc), str(exc))

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        return error_response(400, f"The form expired or was not sent from this site ({exc.description}); "
                                   "go back, reload and try again.")

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_exc: RequestEntityTooLarge):
        from backup_app.web.uploads import too_large_message

        if message := too_large_message():
            return error_response(413, message)
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        return error_response(413, f"The request is larger than this server accepts ({human_size(limit)}, "
                                   "MAX_CONTENT_LENGTH).")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return error_response(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(500)
    def internal_error(exc):
        db.session.rollback()
        return error_response(500, "The server hit an error; it is in the log.")
