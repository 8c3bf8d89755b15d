"""Every route of the app's URL map, with its arguments filled in, for the security tests."""
from dataclasses import dataclass

from flask import Flask

# Open to anyone: the sign-in pages (the password, then a code; single sign-on and its callback),
# static files and the health checks. /metrics is not behind sign-in either: it has its own token
# (METRICS_TOKEN). Everything else needs a signed-in user (pages) or an API token (/api).
PUBLIC = {"auth.login", "auth.two_factor", "auth.oidc_login", "auth.oidc_callback", "static", "health.healthz",
          "health.readyz", "metrics.metrics"}
CHANGING_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass(frozen=True)
class Route:
    endpoint: str
    method: str
    url: str
    arguments: frozenset[str] = frozenset()  # the rule's URL arguments: backup_id, name, …

    @property
    def is_api(self) -> bool:
        return self.endpoint.startswith("api.")

    @property
    def changes_state(self) -> bool:
        return self.method in CHANGING_METHODS

    def call(self, client, **kwargs):
        """The response, read whole and closed (downloads and static files hold files open)."""
        response = client.open(self.url, method=self.method, **kwargs)
        response.get_data()
        response.close()
        return response


def all_routes(app: Flask, argument: str = "b1") -> list[Route]:
    """One Route per rule and method (HEAD and OPTIONS aside), every URL argument set to `argument`."""
    routes = []
    with app.test_request_context():
        adapter = app.url_map.bind("localhost")
        for rule in app.url_map.iter_rules():
            values = {name: "app.css" if rule.endpoint == "static" else argument for name in rule.arguments}
            url = adapter.build(rule.endpoint, values)
            routes += [Route(rule.endpoint, method, url, frozenset(rule.arguments))
                       for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return routes


def guarded_routes(app: Flask) -> list[Route]:
    return [route for route in all_routes(app) if route.endpoint not in PUBLIC]
