// The real-browser test driver: Debian's chromium (/usr/bin/chromium) driven by playwright-core,
// for the Rust tests' tests/common/browser.rs. A long-lived process: one JSON command per line
// on stdin, one JSON reply per line on stdout ({"ok": true, ...} or {"ok": false, "error": ...}),
// in order. Nothing else is written to stdout; diagnostics go to stderr.
//
//   {"cmd":"launch","trust":[{"url":"https://127.0.0.1:9200","ca":"/path/ca.pem"}]}   first, once
//   {"cmd":"goto","url":U}                 -> {status, url, headers} of the final response
//   {"cmd":"fill","selector":S,"value":V}  {"cmd":"click","selector":S}
//   {"cmd":"text","selector":S}            -> {text} (innerText of the first match)
//   {"cmd":"count","selector":S}           -> {count} (matches now; does not wait)
//   {"cmd":"wait_for","selector":S}        waits until S is visible
//   {"cmd":"wait_for_url","contains":T}    waits until the page's URL contains T and has loaded
//   {"cmd":"url"}                          -> {url}
//   {"cmd":"viewport","width":W,"height":H} the page's viewport in CSS pixels (a phone: 390x844)
//   {"cmd":"response"}                     -> {status, url, headers} of the last main-frame
//                                             navigation response (after clicks and redirects too)
//   {"cmd":"screenshot","path":P}          a full-page PNG at P
//   {"cmd":"axe"}                          -> {violations: [{id, impact, help, targets}]}
//   {"cmd":"messages"}                     -> {messages: [{type, text, url}]} console messages
//                                             and page errors ("pageerror") since the last call
//   {"cmd":"cookies"}                      -> {cookies} of the browser context
//   {"cmd":"fetch","url":U,"method":M,"body":B,"headers":{..},"credentials":C}
//                                          -> {status, body, headers} or {error}: fetch() run
//                                             IN the page (its origin, cookies, CSP apply)
//   {"cmd":"eval","expression":E}          -> {value}: E evaluated in the page (JSON result)
//   {"cmd":"new_context"}                  a fresh context and page (no cookies): another user
//   {"cmd":"close"}                        closes chromium, replies, exits 0
//
// Trust: chromium gets --ignore-certificate-errors-spki-list with the SHA-256 of the public key
// (SPKI) of each trusted origin's certificate, read here over TLS verified against the given CA
// (the chain and the IP address are checked first: only that leaf is trusted, nothing else).
// Nothing leaves the machine: every host name but 127.0.0.1 fails to resolve.

import crypto from 'node:crypto';
import fs from 'node:fs';
import readline from 'node:readline';
import tls from 'node:tls';

import { chromium } from 'playwright-core';
import AxeBuilder from '@axe-core/playwright';

const EXECUTABLE = process.env.PORTCULLIS_TEST_CHROMIUM || '/usr/bin/chromium';
const ACTION_TIMEOUT_MS = 15_000;
const NAVIGATION_TIMEOUT_MS = 30_000;

let browser = null;
let context = null;
let page = null;
let messages = [];
let lastNavigation = null;

function spkiPin(trust) {
  const url = new URL(trust.url);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: url.hostname,
      port: Number(url.port || 443),
      ca: fs.readFileSync(trust.ca),
      servername: /^[0-9.]+$/.test(url.hostname) ? undefined : url.hostname,
      rejectUnauthorized: true,
    }, () => {
      const raw = socket.getPeerCertificate().raw;
      socket.end();
      const spki = new crypto.X509Certificate(raw).publicKey.export({ type: 'spki', format: 'der' });
      resolve(crypto.createHash('sha256').update(spki).digest('base64'));
    });
    socket.setTimeout(10_000, () => socket.destroy(new Error(`no TLS handshake with ${trust.url} in 10 s`)));
    socket.on('error', (err) => reject(new Error(`reading the certificate of ${trust.url} (CA ${trust.ca}): ${err.message}`)));
  });
}

async function newContext() {
  if (context) await context.close();
  context = await browser.newContext();
  page = await context.newPage();
  page.setDefaultTimeout(ACTION_TIMEOUT_MS);
  page.setDefaultNavigationTimeout(NAVIGATION_TIMEOUT_MS);
  messages = [];
  lastNavigation = null;
  page.on('console', (m) => messages.push({ type: m.type(), text: m.text(), url: m.location().url || '' }));
  page.on('pageerror', (err) => messages.push({ type: 'pageerror', text: String(err) }));
  page.on('response', (r) => {
    try {
      if (r.request().isNavigationRequest() && r.frame() === page.mainFrame()) lastNavigation = r;
    } catch {
      // A service worker's response has no frame: never a navigation of the page.
    }
  });
}

async function described(response) {
  if (!response) throw new Error('no navigation response yet');
  return { status: response.status(), url: response.url(), headers: await response.allHeaders() };
}

const commands = {
  async launch({ trust = [] }) {
    if (browser) throw new Error('launch: chromium is already running');
    if (!fs.existsSync(EXECUTABLE)) throw new Error(`${EXECUTABLE} is missing: install Debian's chromium (scripts/test does)`);
    const pins = await Promise.all(trust.map(spkiPin));
    const args = [
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-gpu',
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
    ];
    // Root cannot use chromium's sandbox (it needs an unprivileged user namespace or setuid helper).
    if (process.getuid && process.getuid() === 0) args.push('--no-sandbox');
    if (pins.length) args.push(`--ignore-certificate-errors-spki-list=${pins.join(',')}`);
    browser = await chromium.launch({ executablePath: EXECUTABLE, args, headless: true });
    await newContext();
    return { version: browser.version(), pins };
  },
  async goto({ url }) {
    return described(await page.goto(url));
  },
  async fill({ selector, value }) {
    await page.fill(selector, value);
    return {};
  },
  async click({ selector }) {
    await page.click(selector);
    return {};
  },
  async text({ selector }) {
    return { text: await page.locator(selector).first().innerText() };
  },
  async count({ selector }) {
    return { count: await page.locator(selector).count() };
  },
  async wait_for({ selector }) {
    await page.locator(selector).first().waitFor({ state: 'visible' });
    return {};
  },
  async wait_for_url({ contains }) {
    await page.waitForURL((u) => u.href.includes(contains));
    return { url: page.url() };
  },
  async url() {
    return { url: page.url() };
  },
  async viewport({ width, height }) {
    await page.setViewportSize({ width, height });
    return {};
  },
  async response() {
    return described(lastNavigation);
  },
  async screenshot({ path }) {
    await page.screenshot({ path, fullPage: true });
    return { path };
  },
  async axe() {
    const results = await new AxeBuilder({ page }).analyze();
    return {
      violations: results.violations.map((v) => ({
        id: v.id,
        impact: v.impact,
        help: v.help,
        targets: v.nodes.map((n) => n.target.join(' ')),
      })),
    };
  },
  async messages() {
    const seen = messages;
    messages = [];
    return { messages: seen };
  },
  async cookies() {
    return { cookies: await context.cookies() };
  },
  async fetch({ url, method = 'GET', body = null, headers = {}, credentials = 'same-origin' }) {
    return page.evaluate(async (req) => {
      try {
        const r = await fetch(req.url, {
          method: req.method, body: req.body, headers: req.headers, credentials: req.credentials, redirect: 'manual',
        });
        return { status: r.status, body: await r.text(), headers: Object.fromEntries(r.headers.entries()) };
      } catch (err) {
        return { error: String(err) };
      }
    }, { url, method, body, headers, credentials });
  },
  async eval({ expression }) {
    return { value: await page.evaluate(expression) };
  },
  async new_context() {
    await newContext();
    return {};
  },
};

async function close() {
  if (browser) await browser.close();
  browser = null;
}

const input = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
const reply = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

// One command at a time, in order: the next line waits for the reply to the previous one.
for await (const line of input) {
  if (!line.trim()) continue;
  let command;
  try {
    command = JSON.parse(line);
  } catch (err) {
    reply({ ok: false, error: `not a JSON command: ${err.message}` });
    continue;
  }
  if (command.cmd === 'close') {
    await close().catch((err) => console.error(`closing chromium: ${err.message}`));
    reply({ ok: true });
    process.exit(0);
  }
  const run = commands[command.cmd];
  if (!run) {
    reply({ ok: false, error: `unknown command ${JSON.stringify(command.cmd)}` });
    continue;
  }
  if (command.cmd !== 'launch' && !browser) {
    reply({ ok: false, error: 'launch first' });
    continue;
  }
  try {
    reply({ ok: true, ...(await run(command)) });
  } catch (err) {
    reply({ ok: false, error: `${command.cmd}: ${err.message}` });
  }
}
// stdin closed (the test ended without "close"): chromium goes with us.
await close().catch(() => {});
process.exit(0);
