// A real OpenID provider (panva's certified oidc-provider) on loopback, for the single sign-on
// tests and for trying SSO by hand. Not for production: its sign-in page takes any password.
//
//   PORT=4000 node provider.mjs   (the tests start it through devtools/localservers.py OidcProvider)
//
// Settings (environment):
//   PORT                 where it listens, on 127.0.0.1 (its issuer is http://127.0.0.1:PORT)
//   REDIRECT_URIS        the test client's allowed callbacks, comma separated
//   ACCOUNTS_FILE        JSON {"<login>": {"email", "email_verified", "groups"}}; read at every
//                        sign-in, so a test can change a user's groups between two sign-ins
//   ID_TOKEN_TTL         seconds an ID token lives (default 3600)
//   CLOCK_SKEW_SECONDS   shifts this provider's clock (e.g. -600: ten minutes slow), so its
//                        ID tokens can arrive already expired
//
// The client: client_id "backup-app", secret "backup-app-secret", authorization code with PKCE
// (required), scopes openid, email and groups. The ID token carries only `sub` (the claims are
// read from userinfo), as oidc-provider does by default for the code flow.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const skew = Number(process.env.CLOCK_SKEW_SECONDS || 0);
if (skew) {
  const realNow = Date.now;
  Date.now = () => realNow() + skew * 1000;
}

const port = Number(process.env.PORT || 4000);
const issuer = `http://127.0.0.1:${port}`;
const accountsFile = process.env.ACCOUNTS_FILE || new URL('./accounts.json', import.meta.url);
const redirectUris = (process.env.REDIRECT_URIS || 'http://127.0.0.1:5000/login/oidc/callback')
  .split(',').map((uri) => uri.trim()).filter(Boolean);

function accounts() {
  return JSON.parse(readFileSync(accountsFile, 'utf8'));
}

const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'backup-app',
    client_secret: 'backup-app-secret',
    redirect_uris: redirectUris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [{ ...signingKey, kid: 'test-key', use: 'sig', alg: 'RS256' }] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
  scopes: ['openid', 'email', 'groups'],
  pkce: { required: () => true },
  ttl: { IdToken: Number(process.env.ID_TOKEN_TTL || 3600) },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const account = accounts()[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, ...account };
      },
    };
  },
  // The test client is first-party: no consent screen, everything it asks is granted.
  async loadExistingGrant(ctx) {
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope(ctx.oidc.requestParamScopes ? [...ctx.oidc.requestParamScopes].join(' ') : 'openid');
    await grant.save();
    return grant;
  },
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
