"""Sign-in through an OpenID Connect provider (single sign-on), when OIDC_ISSUER is set: the
provider verifies (adapters/openid.py), services/sso.py decides who it is and as what."""
from flask import abort, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_login import login_user

from backup_app.errors import SignInFailed
from backup_app.extensions import db
from backup_app.services import sso
from backup_app.web.auth import bp
from backup_app.web.auth.forms import LoginForm
from backup_app.web.auth.guard import public
from backup_app.web.auth.routes import safe_next


def init_app(app) -> None:
    """Check the single sign-on settings (ValueError as the app starts) and connect the provider."""
    config = app.config
    policy = sso.Policy(roles_claim=config["OIDC_ROLES_CLAIM"], role_map=sso.parse_role_map(config["OIDC_ROLE_MAP"]),
                        default_role=sso.parse_role("OIDC_DEFAULT_ROLE", config["OIDC_DEFAULT_ROLE"]),
                        allowed_domains=sso.parse_domains(config["OIDC_ALLOWED_DOMAINS"]))
    issuer = config["OIDC_ISSUER"]
    if not issuer:
        if not config["LOCAL_LOGIN"]:
            raise ValueError("LOCAL_LOGIN=false turns password sign-in off, but OIDC_ISSUER is not set: "
                             "nobody could sign in")
        return
    if not config["OIDC_CLIENT_ID"] or not config["OIDC_CLIENT_SECRET"]:
        raise ValueError("OIDC_ISSUER is set: OIDC_CLIENT_ID and OIDC_CLIENT_SECRET are needed too")
    if "openid" not in config["OIDC_SCOPES"].split():
        raise ValueError(f"OIDC_SCOPES must include openid, not {config['OIDC_SCOPES']!r}")
    from backup_app.adapters.openid import OpenIdProvider  # Authlib: loaded only when SSO is on

    provider = OpenIdProvider(app, issuer, config["OIDC_CLIENT_ID"], config["OIDC_CLIENT_SECRET"],
                              config["OIDC_SCOPES"])
    app.extensions["sso"] = (provider, policy)


@bp.context_processor
def sign_in_choices() -> dict:
    """For the sign-in page: the password form (unless LOCAL_LOGIN=false) and the SSO button's label."""
    config = current_app.config
    return {"local_login": config["LOCAL_LOGIN"],
            "sso_label": config["OIDC_PROVIDER_NAME"] if config["OIDC_ISSUER"] else None}


def configured():
    """The provider and the sign-in policy; 404 when single sign-on is off."""
    if "sso" not in current_app.extensions:
        abort(404)
    return current_app.extensions["sso"]


@bp.get("/login/oidc")
@public
def oidc_login():
    """Go to the provider to sign in."""
    provider, _policy = configured()
    session["oidc_next"] = safe_next(request.args.get("next"))
    try:
        return provider.redirect(url_for("auth.oidc_callback", _external=True))
    except SignInFailed as exc:
        return refused(exc)


@bp.get("/login/oidc/callback")
@public
def oidc_callback():
    """Where the provider sends the browser back: verify its answer, then sign in."""
    provider, policy = configured()
    try:
        claims = provider.verified_claims()
        g.audit_subject = claims["email"] if isinstance(claims.get("email"), str) else ""
        user = sso.sign_in(db.session, provider.issuer, claims, policy)
    except SignInFailed as exc:
        return refused(exc)
    login_user(user)
    return redirect(session.pop("oidc_next", None) or url_for("dashboard.index"))


def refused(exc: SignInFailed):
    """The sign-in page again, saying why, with nobody signed in."""
    session.pop("oidc_next", None)
    flash(str(exc), "error")
    return render_template("auth/login.html", form=LoginForm()), exc.status
