"""An OpenID Connect provider, spoken to through Authlib: authorization code flow with PKCE (S256).

Authlib keeps the state, nonce and code verifier in the (signed) session cookie until the
callback, refuses a callback whose state is not this browser's, and verifies the ID token with a
key of the provider's JWKS (found through its discovery document): signature, issuer, audience
(our client), nonce, expiry. Imported only when OIDC_ISSUER is set.
"""
import requests
from authlib.integrations.base_client import MismatchingStateError, OAuthError
from authlib.integrations.flask_client import OAuth
from joserfc.errors import ExpiredTokenError, JoseError

from backup_app.errors import SignInFailed

NAME = "oidc"
TIMEOUT = 10  # seconds for each request to the provider


class OpenIdProvider:
    def __init__(self, app, issuer: str, client_id: str, client_secret: str, scopes: str):
        self.issuer = issuer
        self.client_id = client_id
        self.client = OAuth(app).register(
            NAME, client_id=client_id, client_secret=client_secret,
            server_metadata_url=issuer.rstrip("/") + "/.well-known/openid-configuration",
            client_kwargs={"scope": scopes, "code_challenge_method": "S256", "default_timeout": TIMEOUT})

    def redirect(self, callback_url: str):
        """The redirect to the provider's sign-in (its state, nonce and verifier kept in the session)."""
        try:
            return self.client.authorize_redirect(callback_url)
        except requests.RequestException as exc:
            raise unreachable(exc) from None

    def verified_claims(self) -> dict:
        """The claims of the callback's request: its verified ID token's, with the provider's
        userinfo for what the token leaves out (about the same subject only). SignInFailed
        saying what did not verify."""
        try:
            token = self.client.authorize_access_token(claims_options={
                "iss": {"essential": True, "value": self.issuer},
                "aud": {"essential": True, "value": self.client_id}})
            if "userinfo" not in token:
                raise SignInFailed("The provider sent no ID token")
            claims = dict(token["userinfo"])
            if self.client.load_server_metadata().get("userinfo_endpoint"):
                info = self.client.userinfo(token=token)
                if info.get("sub") != claims["sub"]:
                    raise SignInFailed("The provider's userinfo is about someone other than its ID token")
                claims = {**info, **claims}
        except MismatchingStateError:
            raise SignInFailed("This sign-in was not started in this browser (its state does not match); "
                               "start again", 400) from None
        except OAuthError as exc:
            said = f"{exc.error}: {exc.description}" if exc.description else exc.error
            raise SignInFailed(f"The provider refused the sign-in ({said[:200]})") from None
        except ExpiredTokenError:
            raise SignInFailed("The provider's ID token has expired (is its clock, or ours, wrong?)") from None
        except JoseError as exc:
            raise SignInFailed(f"The provider's ID token did not verify ({exc})") from None
        except requests.HTTPError as exc:
            raise SignInFailed(f"The provider refused the sign-in (its userinfo answered "
                               f"{exc.response.status_code if exc.response is not None else 'an error'})") from None
        except requests.RequestException as exc:
            raise unreachable(exc) from None
        return claims


def unreachable(exc: requests.RequestException) -> SignInFailed:
    return SignInFailed(f"The sign-in provider could not be reached ({type(exc).__name__})", 502)
