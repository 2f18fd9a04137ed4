'use strict';
/*
 * Shared by the interop scripts that drive the published npm client `captivate-chat-api` (installed, unchanged,
 * under a prefix) against a local gateway:
 *   - redirectToGateway(): before the package is loaded, redirects only two things:
 *       globalThis.WebSocket: a subclass of ws's WebSocket that rewrites the cloud WebSocket hosts to the gateway
 *         (the bundle prefers a global WebSocket over require('ws'));
 *       globalThis.fetch: rewrites the cloud HTTP bases (channel and file service) to the gateway.
 *     Any other non-local address is refused, so nothing reaches the real cloud.
 *   - runner(): named steps with a timeout, a watchdog, and one JSON object on the last line of stdout
 *     (exit 0 when written, 2 on a setup failure or the watchdog).
 */

const path = require('path');

const WS_HOSTS = ['wss://channel.wss.captivatechat.ai', 'wss://channel-dev.wss.captivatechat.ai'];
const HTTP_HOSTS = ['https://channel.prod.captivat.io', 'https://channel.dev.captivat.io', 'https://file-to-text.prod.captivat.io'];

function need(name) {
  const value = process.env[name];
  if (!value) {
    process.stderr.write(`${path.basename(process.argv[1])}: environment variable ${name} is required\n`);
    process.exit(2);
  }
  return value;
}

/** `label(key)` names a key in the output ("key1" …) so that no API key is ever printed. */
function redirectToGateway({ prefix, port, label }) {
  const gatewayHttp = `http://127.0.0.1:${port}`;
  const gatewayWs = `ws://127.0.0.1:${port}`;
  const seen = { ws: [], fetch: [] };
  const frames = []; // every platform frame received on any client socket (a tap; the client's handlers are separate)

  const redact = (url) =>
    String(url).replace(/apiKey=[^&]*/, (m) => `apiKey=<${label(decodeURIComponent(m.slice(7)))}>`);

  function rewrite(url, hosts, local) {
    for (const host of hosts) {
      if (url === host || url.startsWith(host + '/') || url.startsWith(host + '?')) return local + url.slice(host.length);
    }
    if (url.startsWith(local + '/') || url === local) return url;
    throw new Error(`interop: refusing to contact ${redact(url)} (not a Captivate cloud URL nor the gateway)`);
  }

  const WS = require(path.join(prefix, 'node_modules', 'ws'));

  class RedirectingWebSocket extends WS {
    constructor(address, protocols, options) {
      const original = String(address);
      const target = rewrite(original, WS_HOSTS, gatewayWs);
      seen.ws.push({ from: redact(original), to: redact(target) });
      super(target, protocols, options);
      this.addEventListener('message', (event) => {
        try {
          frames.push(JSON.parse(String(event.data)));
        } catch (err) {
          frames.push({ unparsable: String(event.data).slice(0, 200) });
        }
      });
    }
  }
  globalThis.WebSocket = RedirectingWebSocket;

  const realFetch = globalThis.fetch;
  if (typeof realFetch !== 'function') {
    process.stderr.write('interop: this Node has no global fetch (need Node >= 18)\n');
    process.exit(2);
  }
  globalThis.fetch = function redirectingFetch(input, init) {
    const original = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const target = rewrite(original, HTTP_HOSTS, gatewayHttp);
    let kind;
    try {
      kind = JSON.parse(init && init.body).event.event_type;
    } catch (err) {
      kind = undefined;
    }
    seen.fetch.push({
      from: original.split('?')[0],
      to: target.split('?')[0],
      method: (init && init.method) || 'GET',
      event_type: kind,
    });
    return realFetch(typeof input === 'string' || input instanceof URL ? target : new Request(target, input), init);
  };

  return { seen, frames, realFetch };
}

/** The package, loaded from the prefix (call after redirectToGateway). */
function loadClient(prefix) {
  const root = path.join(prefix, 'node_modules', 'captivate-chat-api');
  return { version: require(path.join(root, 'package.json')).version, exports: require(root) };
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * `step(name, fn)` stores fn's result (or {error}) under results[name]; `run(main)` prints results, with
 * `_meta` from meta() and any `_fatal` / `_watchdog` problem, as the last line of stdout and exits.
 */
function runner({ watchdogMs, meta }) {
  const results = {};
  const unhandled = [];
  let current = null;
  process.on('unhandledRejection', (reason) => {
    // e.g. the client's reconnect timer after a refused key rejects with nobody listening; keep it, do not crash.
    unhandled.push(String((reason && reason.message) || reason));
  });

  function emit(code) {
    results._meta = { ...meta(), unhandled_rejections: unhandled };
    process.stdout.write('\n' + JSON.stringify(results) + '\n', () => process.exit(code));
  }

  const watchdog = setTimeout(() => {
    results._watchdog = `the script did not finish within ${watchdogMs} ms (stuck in step ${current})`;
    emit(2);
  }, watchdogMs);

  async function step(name, fn, ms = 15000) {
    current = name;
    try {
      const value = await withTimeout(Promise.resolve().then(fn), ms, `step ${name}`);
      results[name] = value === undefined ? { ok: true } : value;
    } catch (err) {
      results[name] = { error: String((err && err.message) || err) };
    }
    return results[name];
  }

  function run(main) {
    main().then(
      () => {
        clearTimeout(watchdog);
        emit(0);
      },
      (err) => {
        clearTimeout(watchdog);
        results._fatal = String((err && err.stack) || err);
        emit(2);
      },
    );
  }

  return { results, step, run };
}

module.exports = { need, redirectToGateway, loadClient, runner };
