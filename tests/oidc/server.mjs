// A real, certified OpenID provider (oidc-provider) for mailtoken's `provider = "generic"` tests.
//
// node server.mjs --cert CERT.pem --key KEY.pem [--token-ttl SECONDS]
// Listens on https://127.0.0.1:<free port>, prints one JSON line {"issuer": ..., "pid": ...} when ready, and
// serves until SIGTERM. Device flow, PKCE (required) and refresh-token rotation are on; the development
// interaction pages sign in any login name with any password, which the tests drive with a scripted client.
// GET /_test/counts answers how many token grants succeeded and failed, per grant type.
import fs from 'node:fs';
import https from 'node:https';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    cert: { type: 'string' },
    key: { type: 'string' },
    'token-ttl': { type: 'string', default: '3600' },
  },
});

const CLIENT_ID = 'mailtoken-test';
const counts = {};
const bump = (name) => { counts[name] = (counts[name] || 0) + 1; };

const server = https.createServer({ cert: fs.readFileSync(args.cert), key: fs.readFileSync(args.key) });
await new Promise((resolve) => { server.listen(0, '127.0.0.1', resolve); });
const issuer = `https://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: CLIENT_ID,
    application_type: 'native',
    token_endpoint_auth_method: 'none', // a public client, as mailtoken is
    grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'authorization_code', 'refresh_token'],
    response_types: ['code'],
    // Native clients may use any port on these (RFC 8252 section 7.3).
    redirect_uris: ['http://127.0.0.1', 'http://localhost'],
  }],
  features: {
    deviceFlow: { enabled: true },
    devInteractions: { enabled: true },
    revocation: { enabled: true },
  },
  pkce: { required: () => true },
  // Every refresh spends the old refresh token; reusing a spent one revokes the whole grant.
  rotateRefreshToken: true,
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  findAccount: async (_ctx, sub) => ({
    accountId: sub,
    claims: async () => ({ sub, email: sub, email_verified: true }),
  }),
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  scopes: ['openid', 'offline_access', 'email', 'mail'],
  ttl: {
    AccessToken: Number(args['token-ttl']),
    DeviceCode: 600,
    Grant: 86400,
    IdToken: 3600,
    Interaction: 600,
    RefreshToken: 86400,
    Session: 86400,
  },
  cookies: { keys: ['mailtoken-test-cookie-key'] },
  // The email claim in the id_token too, not only from userinfo: mailtoken shows who signed in.
  conformIdTokenClaims: false,
});
provider.on('grant.success', (ctx) => bump(`${ctx.oidc.params.grant_type}:ok`));
provider.on('grant.error', (ctx) => bump(`${ctx.oidc.params?.grant_type}:error`));
provider.on('server_error', (_ctx, err) => { process.stderr.write(`server_error: ${err.stack}\n`); });

const callback = provider.callback();
server.on('request', (req, res) => {
  if (req.url === '/_test/counts') {
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify(counts));
    return;
  }
  callback(req, res);
});

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdout.write(`${JSON.stringify({ issuer, pid: process.pid })}\n`);
