"""backup_app: PostgreSQL backups kept twice, on local disk and in S3."""
from pathlib import Path

from flask import Flask
from flask.cli import load_dotenv
from flask.helpers import get_load_dotenv

from backup_app.config import Config
from backup_app.core import filemodes
from backup_app.core.formatting import (
    cron_words,
    duration,
    exact_time,
    human_size,
    location_label,
    relative_time,
)
from backup_app.core.sqltext import shown_role
from backup_app.extensions import csrf, db, login_manager
from backup_app.web import access, input_guard, proxies, security_headers, sessions
from backup_app.web.auth import oidc
from backup_app.web.errorhandlers import register_errorhandlers


def create_app(config: object | dict | None = None) -> Flask:
    """Application factory: `config` is a Config object or a mapping of overrides; without one, the
    settings come from the environment and `.env` (as `flask` reads it, so gunicorn and the worker
    see what the CLI sees)."""
    if config is None and get_load_dotenv():
        load_dotenv()
    root = Path(__file__).resolve().parent.parent
    app = Flask(__name__, instance_relative_config=True,
                template_folder=str(root / "templates"), static_folder=str(root / "static"))
    app.config.from_object(Config() if config is None or isinstance(config, dict) else config)
    if isinstance(config, dict):
        app.config.from_mapping(config)
    filemodes.make_private()
    require_secret_key_in_debug(app)
    apply_instance_defaults(app)
    register_extensions(app)
    register_blueprints(app)
    register_errorhandlers(app)
    security_headers.init_app(app)
    input_guard.init_app(app)
    sessions.init_app(app)
    proxies.init_app(app)
    access.init_app(app)
    oidc.init_app(app)
    register_template_filters(app)
    register_commands(app)
    from backup_app.services import notifications  # noqa: F401 - subscribes to the services' events
    return app


def apply_instance_defaults(app: Flask) -> None:
    """Put the catalog, the backup folder and the PITR restore root in the instance folder unless configured."""
    instance = Path(app.instance_path)
    instance.mkdir(parents=True, exist_ok=True)
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{instance / 'catalog.db'}"
    if not app.config.get("BACKUP_DIR"):
        app.config["BACKUP_DIR"] = str(instance / "backups")
    if not app.config.get("PITR_RESTORE_ROOT"):
        app.config["PITR_RESTORE_ROOT"] = str(instance / "pitr-restores")


def require_secret_key_in_debug(app: Flask) -> None:
    """Refuse to start in debug mode (FLASK_DEBUG) without SECRET_KEY: no built-in key signs
    sessions that anyone who read the code could forge."""
    if app.debug and not app.config.get("SECRET_KEY"):
        raise RuntimeError("SECRET_KEY is not set; FLASK_DEBUG does not make one up. Set SECRET_KEY "
                           "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'), "
                           "or use `make run`, which generates one.")


def warn_if_loose(app: Flask) -> None:
    """Log a warning for each folder of the app's that other local users may enter (once logging is set)."""
    filemodes.warn_if_loose(private_folders(app))


def private_folders(app: Flask) -> list[Path]:
    """The folders holding what the app writes: the instance folder, BACKUP_DIR and a SQLite catalog's."""
    folders = [Path(app.instance_path), Path(app.config["BACKUP_DIR"])]
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("sqlite:///"):
        folders.append(Path(uri.removeprefix("sqlite:///")).parent)
    return folders


def register_extensions(app: Flask) -> None:
    from backup_app import wiring
    from backup_app.web.auth.guard import require_login

    db.init_app(app)
    csrf.init_app(app)
    login_manager.init_app(app)
    app.before_request(require_login)  # instead of @login_required on each view: none can be forgotten
    wiring.init_app(app)


def register_blueprints(app: Flask) -> None:
    from backup_app.api import bp as api_bp
    from backup_app.web.account import bp as account_bp
    from backup_app.web.audit import bp as audit_bp
    from backup_app.web.auth import bp as auth_bp
    from backup_app.web.backups import bp as backups_bp
    from backup_app.web.dashboard import bp as dashboard_bp
    from backup_app.web.health import bp as health_bp
    from backup_app.web.jobs import bp as jobs_bp
    from backup_app.web.metrics import bp as metrics_bp
    from backup_app.web.restores import bp as restores_bp
    from backup_app.web.settings import bp as settings_bp
    from backup_app.web.targets import bp as targets_bp
    from backup_app.web.users import bp as users_bp

    app.register_blueprint(backups_bp)
    app.register_blueprint(auth_bp)
    app.register_blueprint(jobs_bp)
    app.register_blueprint(targets_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(health_bp)
    app.register_blueprint(audit_bp)
    app.register_blueprint(dashboard_bp)
    app.register_blueprint(metrics_bp)
    app.register_blueprint(restores_bp)
    app.register_blueprint(settings_bp)
    app.register_blueprint(users_bp)
    app.register_blueprint(account_bp)
    csrf.exempt(api_bp)  # bearer tokens only: no ambient credential to forge a request with


def register_template_filters(app: Flask) -> None:
    app.jinja_env.filters.update(human_size=human_size, ago=relative_time, exact=exact_time,
                                  location=location_label, duration=duration, cron=cron_words,
                                  shown_role=shown_role)


def register_commands(app: Flask) -> None:
    from backup_app.cli import register_commands as register

    register(app)
