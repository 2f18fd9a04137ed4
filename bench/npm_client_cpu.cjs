'use strict';
/*
 * The npm client half of bench/client_cpu.py: N sequential messages in one conversation with the published
 * `captivate-chat-api` (installed, unchanged, under CCA_NPM_PREFIX), redirected to a local gateway exactly as
 * the interop tests do it (tests/interop/npm_harness.cjs: a ws subclass as globalThis.WebSocket and a wrapped
 * fetch, installed before the package is loaded).
 *
 * Per message: sendMessage(text), then wait for onMessage(content, "ai_agent") with the demo agent's
 * "You said: <text>". After CCA_WARMUP unmeasured messages, CCA_MESSAGES are measured: the round trip of each
 * (hrtime) and process.cpuUsage() (getrusage: user+sys, all threads) around the whole measured loop.
 *
 * Environment: CCA_NPM_PREFIX, CCA_PORT, CCA_KEY, CCA_MESSAGES, CCA_WARMUP, CCA_TEXT (with "{i}"),
 * CCA_TIMEOUT_MS. Output (npm_harness runner): one JSON object on the last line of stdout, the result under
 * "measure" (or {"error": ...}).
 */

const path = require('path');

const { need, redirectToGateway, loadClient, runner } = require(
  path.join(__dirname, '..', 'tests', 'interop', 'npm_harness.cjs'),
);

const PREFIX = need('CCA_NPM_PREFIX');
const PORT = need('CCA_PORT');
const KEY = need('CCA_KEY');
const MESSAGES = Number(need('CCA_MESSAGES'));
const WARMUP = Number(need('CCA_WARMUP'));
const TEXT = need('CCA_TEXT');
const TIMEOUT_MS = Number(process.env.CCA_TIMEOUT_MS || 60000);

const { seen } = redirectToGateway({ prefix: PREFIX, port: PORT, label: (key) => (key === KEY ? 'bench' : 'other') });
const client = loadClient(PREFIX);
const { CaptivateChatAPI } = client.exports;

const { step, run } = runner({
  watchdogMs: TIMEOUT_MS + 5000,
  meta: () => ({ package_version: client.version, node: process.version, redirected: seen }),
});

async function measure() {
  const api = await CaptivateChatAPI.create(KEY);
  const conversation = await api.createConversation('bench-npm-user', {}, {}, 'user-first');
  let waiting = null; // {text, resolve, reject}: the one reply in flight
  conversation.onMessage((content, from) => {
    if (waiting === null) return;
    if (from === 'error') {
      const w = waiting;
      waiting = null;
      w.reject(new Error(`onMessage error: ${JSON.stringify(content)}`));
    } else if (from === 'ai_agent' && content && content.text === waiting.text) {
      const arrived = process.hrtime.bigint();
      const w = waiting;
      waiting = null;
      w.resolve(arrived);
    }
  });

  const latencies = [];
  let cpu0;
  let wall0;
  for (let i = 0; i < WARMUP + MESSAGES; i += 1) {
    if (i === WARMUP) {
      wall0 = process.hrtime.bigint();
      cpu0 = process.cpuUsage();
    }
    const text = TEXT.replace('{i}', String(i));
    const reply = new Promise((resolve, reject) => {
      waiting = { text: `You said: ${text}`, resolve, reject };
    });
    const started = process.hrtime.bigint();
    await conversation.sendMessage(text);
    const arrived = await reply;
    if (i >= WARMUP) latencies.push(Number(arrived - started));
  }
  const cpu = process.cpuUsage(cpu0);
  const wall = Number(process.hrtime.bigint() - wall0);
  api.dispose();
  return {
    client: `captivate-chat-api@${client.version} (node ${process.version})`,
    latencies_ns: latencies,
    cpu_user_s: cpu.user / 1e6,
    cpu_sys_s: cpu.system / 1e6,
    wall_s: wall / 1e9,
  };
}

run(() => step('measure', measure, TIMEOUT_MS));
