// A real OpenID provider for Portcullis' OIDC tests: npm `oidc-provider` (OpenID Certified)
// on 127.0.0.1, with one confidential client, a `groups` claim, amr, acr and auth_time, the
// device flow, and a login form of its own that a test completes with plain HTTP.
//
//   CLIENT_ID=portcullis CLIENT_SECRET=s3cret REDIRECT_URI=https://127.0.0.1:9200/v1/auth/oidc/callback \
//     node tests/oidc/provider.mjs
//
// Prints one JSON line {"issuer": "http://127.0.0.1:PORT"} when ready.
//
// The login form (POST /interaction/UID/login) takes: user, groups (comma separated), amr
// (comma separated), acr, auth_age (seconds: auth_time is that long ago), nogroups=1 (the ID
// token then has no groups claim), overflow=1 (Entra-style `_claim_names` instead of groups),
// deny=1 (the provider answers the client with error=access_denied).
//
// POST /admin/next?mode=M makes the NEXT token response's ID token bad, once:
//   tamper       payload changed after signing (bad signature)
//   wrong-aud    re-signed with the real key, audience another client's
//   expired      re-signed with the real key, exp a minute ago
//   unknown-kid  signed with a key the JWKS does not publish
//   rotate       (not bad) a key rotation: the JWKS now also publishes key k2, which signs
//   alg-none     unsigned (alg "none")
//   hs256        HMAC-signed with the client secret (symmetric key confusion)
//
// POST /admin/ignore-max-age?on=1 makes the provider ignore max_age (and prompt) in
// authorization requests from then on, as some providers do: a step-up login then reuses the
// provider's session and its old auth_time (on=0 undoes it).

import crypto from 'node:crypto';
import http from 'node:http';

import Provider from 'oidc-provider';

const clientId = process.env.CLIENT_ID || 'portcullis';
const clientSecret = process.env.CLIENT_SECRET || 'portcullis-test-secret';
const redirectUri = process.env.REDIRECT_URI;
if (!redirectUri) {
  console.error('REDIRECT_URI is required (the controller\'s /v1/auth/oidc/callback URL)');
  process.exit(2);
}

function rsaKey(kid) {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { kid, privateKey, jwk: { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' } };
}
const signing = rsaKey('k1');
const rogue = rsaKey('rogue');
// `rotate` publishes this second key in the JWKS and signs with it: a real key rotation.
const next = rsaKey('k2');
let rotated = false;
const publicJwk = ({ kty, n, e, kid, alg, use }) => ({ kty, n, e, kid, alg, use });

const b64u = (buf) => Buffer.from(buf).toString('base64url');
const decode = (part) => JSON.parse(Buffer.from(part, 'base64url').toString());

function sign(header, payload, key) {
  const data = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(payload))}`;
  return `${data}.${b64u(crypto.sign('sha256', Buffer.from(data), key))}`;
}

function spoil(idToken, mode) {
  const [h, p] = idToken.split('.');
  const header = decode(h);
  const payload = decode(p);
  const now = Math.floor(Date.now() / 1000);
  switch (mode) {
    case 'tamper': {
      const parts = idToken.split('.');
      parts[1] = b64u(JSON.stringify({ ...payload, groups: [...(payload.groups || []), 'superusers'] }));
      return parts.join('.');
    }
    case 'wrong-aud':
      return sign(header, { ...payload, aud: 'someone-else', azp: 'someone-else' }, signing.privateKey);
    case 'expired':
      return sign(header, { ...payload, iat: now - 120, exp: now - 60 }, signing.privateKey);
    case 'rotate':
      return sign({ ...header, kid: next.kid }, payload, next.privateKey);
    case 'unknown-kid':
      return sign({ ...header, kid: rogue.kid }, payload, rogue.privateKey);
    case 'alg-none':
      return `${b64u(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${b64u(JSON.stringify(payload))}.`;
    case 'hs256': {
      const data = `${b64u(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64u(JSON.stringify(payload))}`;
      return `${data}.${b64u(crypto.createHmac('sha256', clientSecret).update(data).digest())}`;
    }
    default:
      return idToken;
  }
}

// What each user chose at its last login.
const accounts = new Map();
let nextMode = null;
let ignoreMaxAge = false;

const html = (title, body) => `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title></head><body><h1>${title}</h1>${body}</body></html>`;

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code', 'urn:ietf:params:oauth:grant-type:device_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    require_auth_time: true,
  }],
  jwks: { keys: [signing.jwk] },
  conformIdTokenClaims: false,
  claims: {
    // amr and acr come from the login; listing them under openid puts them in every ID token.
    openid: ['sub', 'amr', 'acr'],
    profile: ['name', 'preferred_username'],
    email: ['email'],
    groups: ['groups'],
  },
  scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],
  acrValues: ['bronze', 'gold'],
  cookies: { keys: ['portcullis-test-cookie-key'] },
  features: {
    devInteractions: { enabled: false },
    deviceFlow: {
      enabled: true,
      userCodeInputSource: async (ctx, form) => { ctx.body = html('Device', form); },
      userCodeConfirmSource: async (ctx, form, client, info, code) => { ctx.body = html('Confirm device', `<p>${code}</p>${form}`); },
      successSource: async (ctx) => { ctx.body = html('Device login done', '<p>You can close this page.</p>'); },
    },
  },
  pkce: { required: () => true },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const chosen = accounts.get(id) || {};
    return {
      accountId: id,
      async claims() {
        const claims = { sub: id, preferred_username: id, name: `User ${id}`, email: `${id}@example.test` };
        if (chosen.overflow) {
          claims._claim_names = { groups: 'src1' };
          claims._claim_sources = { src1: { endpoint: `${issuer}/groups-of/${id}` } };
        } else if (!chosen.nogroups) {
          claims.groups = chosen.groups || [];
        }
        return claims;
      },
    };
  },
  // Auto-consent: every client gets what it asks for.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) {
      const grant = await ctx.oidc.provider.Grant.find(grantId);
      if (grant) return grant;
    }
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid profile email groups');
    grant.addOIDCClaims(['groups', 'preferred_username', 'email', 'name']);
    await grant.save();
    return grant;
  },
});

provider.use(async (ctx, next) => {
  await next();
  if (ctx.path === '/token' && nextMode && ctx.body && typeof ctx.body === 'object' && ctx.body.id_token) {
    ctx.body = { ...ctx.body, id_token: spoil(ctx.body.id_token, nextMode) };
    nextMode = null;
  }
});

const callback = provider.callback();

function readForm(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => resolve(Object.fromEntries(new URLSearchParams(body))));
    req.on('error', reject);
  });
}

const list = (text) => (text || '').split(',').map((s) => s.trim()).filter(Boolean);

server.on('request', async (req, res) => {
  try {
    const url = new URL(req.url, issuer);
    if (req.method === 'POST' && url.pathname === '/admin/next') {
      nextMode = url.searchParams.get('mode');
      if (nextMode === 'rotate') rotated = true;
      res.writeHead(204).end();
      return;
    }
    if (req.method === 'POST' && url.pathname === '/admin/ignore-max-age') {
      ignoreMaxAge = url.searchParams.get('on') === '1';
      res.writeHead(204).end();
      return;
    }
    if (ignoreMaxAge && url.pathname === '/auth') {
      url.searchParams.delete('max_age');
      url.searchParams.delete('prompt');
      req.url = `${url.pathname}?${url.searchParams}`;
    }
    if (rotated && req.method === 'GET' && url.pathname === '/jwks') {
      res.writeHead(200, { 'content-type': 'application/jwk-set+json' });
      res.end(JSON.stringify({ keys: [publicJwk(signing.jwk), publicJwk(next.jwk)] }));
      return;
    }
    const m = url.pathname.match(/^\/interaction\/([^/]+)(\/login)?$/);
    if (m) {
      const details = await provider.interactionDetails(req, res);
      if (!m[2]) {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        res.end(html('Sign in', `<form method="post" action="/interaction/${m[1]}/login">
<input name="user"> <input name="groups"> <input name="amr" value="pwd"> <input name="acr">
<input name="auth_age" value="0"> <input type="checkbox" name="nogroups" value="1">
<input type="checkbox" name="overflow" value="1"> <button>Sign in</button></form>`));
        return;
      }
      const form = await readForm(req);
      if (form.deny === '1') {
        await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'the user declined' }, { mergeWithLastSubmission: false });
        return;
      }
      const user = form.user || 'alice';
      accounts.set(user, { groups: list(form.groups), nogroups: form.nogroups === '1', overflow: form.overflow === '1' });
      const ts = Math.floor(Date.now() / 1000) - Number(form.auth_age || 0);
      const login = { accountId: user, ts, amr: list(form.amr), remember: false };
      if (form.acr) login.acr = form.acr;
      void details;
      await provider.interactionFinished(req, res, { login }, { mergeWithLastSubmission: false });
      return;
    }
    callback(req, res);
  } catch (err) {
    res.writeHead(500, { 'content-type': 'text/plain' }).end(String(err));
  }
});

process.stdout.write(`${JSON.stringify({ issuer })}\n`);
