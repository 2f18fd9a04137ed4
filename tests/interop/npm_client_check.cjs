'use strict';
/*
 * Drives the published npm client `captivate-chat-api` (installed, unchanged, under CCA_NPM_PREFIX) against a
 * local gateway. Only its WebSocket constructor and fetch are redirected, before the package is loaded
 * (npm_harness.cjs); any other non-local address is refused, so nothing reaches the real cloud.
 *
 * Environment: CCA_NPM_PREFIX, CCA_PORT, CCA_KEY1, CCA_KEY2, CCA_BAD_KEY, CCA_USER.
 * Output: one JSON object on the last line of stdout, one field per step: the step's result, or
 * {"error": "..."} when the call failed. Exit 0 when the JSON was written, 2 on a setup failure or the watchdog.
 */

const { need, redirectToGateway, loadClient, runner } = require('./npm_harness.cjs');

const PREFIX = need('CCA_NPM_PREFIX');
const PORT = need('CCA_PORT');
const KEY1 = need('CCA_KEY1');
const KEY2 = need('CCA_KEY2');
const BAD_KEY = need('CCA_BAD_KEY');
const USER = need('CCA_USER');
const WATCHDOG_MS = Number(process.env.CCA_WATCHDOG_MS || 45000);
const WAIT_MS = Number(process.env.CCA_WAIT_MS || 5000);

function label(key) {
  if (key === KEY1) return 'key1';
  if (key === KEY2) return 'key2';
  if (key === BAD_KEY) return 'bad_key';
  return key === undefined ? undefined : 'other';
}

// The two redirections, installed before the package is loaded.
const { seen, frames } = redirectToGateway({ prefix: PREFIX, port: PORT, label });
const client = loadClient(PREFIX);
const { CaptivateChatAPI, CaptivateChatManager } = client.exports;

const { results, step, run } = runner({
  watchdogMs: WATCHDOG_MS,
  meta: () => ({ package_version: client.version, node: process.version, redirected: seen }),
});

// --- helpers ----------------------------------------------------------------------------------------------------

function waitFor(predicate, what, ms = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const tick = () => {
      let found;
      try {
        found = predicate();
      } catch (err) {
        reject(err);
        return;
      }
      if (found) resolve(found);
      else if (Date.now() - started > ms) reject(new Error(`timeout after ${ms} ms waiting for ${what}`));
      else setTimeout(tick, 20);
    };
    tick();
  });
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function textOf(content) {
  return content && typeof content === 'object' && content.type === 'text' ? content.text : undefined;
}

/** Registers every handler of the public API on a conversation object and records what they receive. */
function listen(conversation) {
  const log = { messages: [], actions: [], updates: [], errors: [] };
  conversation.onMessage((content, from) => log.messages.push({ content, from }));
  conversation.onActionReceived((actions) => log.actions.push(actions));
  conversation.onConversationUpdate((update) => log.updates.push(update));
  conversation.onError((error) => log.errors.push(error));
  return log;
}

function agentText(log, text) {
  return () => log.messages.find((m) => m.from === 'ai_agent' && textOf(m.content) === text);
}

function describe(list) {
  return {
    ids: list.conversations.map((c) => c.getConversationId()),
    apiKeys: list.conversations.map((c) => label(c.apiKey)),
    metadata: list.conversations.map((c) => c.metadata),
    pagination: list.pagination === undefined ? null : list.pagination,
  };
}

// --- the checks -------------------------------------------------------------------------------------------------

async function main() {
  let api1;
  let api2;
  let convA;
  let convB;
  let convC;
  let convD;
  let logA;
  let logC;

  await step('connect', async () => {
    api1 = await CaptivateChatAPI.create(KEY1);
    // every method but a few is wrapped by the client's socket guard and returns a promise
    return { socketActive: api1.isSocketActive(), socketId: await api1.getSocketId() };
  });
  if (!api1 || !api1.isSocketActive()) return; // nothing else can work; the JSON says why

  await step('create_user_first', async () => {
    convA = await api1.createConversation(
      USER,
      { firstName: 'Ada', lastName: 'Lovelace', email: 'ada@example.com' },
      { topic: 'alpha-npm' },
      'user-first',
      { secret: 's1' },
    );
    logA = listen(convA);
    return { conversationId: convA.getConversationId() };
  });

  await step('send_message_string', async () => {
    const ack = await convA.sendMessage('hello');
    const reply = await waitFor(agentText(logA, 'You said: hello'), 'onMessage("You said: hello", "ai_agent")');
    return { resolved: ack === undefined ? null : ack, reply };
  });

  await step('send_message_object', async () => {
    await convA.sendMessage({ type: 'text', text: 'buttons' });
    const echo = await waitFor(agentText(logA, 'You said: buttons'), 'onMessage "You said: buttons"');
    const button = await waitFor(
      () => logA.messages.find((m) => m.from === 'ai_agent' && m.content && m.content.type === 'button'),
      'onMessage({type:"button", ...}, "ai_agent")',
    );
    return { echo, button };
  });

  await step('set_metadata', () => convA.setMetadata({ plan: 'pro' }));
  await step('set_private_metadata', () => convA.setPrivateMetadata({ crm_id: 7 }));
  await step('get_metadata', async () => ({ metadata: await convA.getMetadata() }));

  await step('send_action', async () => {
    await convA.sendAction('my_action', { x: 1 });
    const reply = await waitFor(agentText(logA, 'Action received: my_action'), 'onMessage "Action received: ..."');
    return { reply };
  });

  await step('on_action_received', async () => {
    await convA.sendMessage('action');
    const actions = await waitFor(
      () => logA.actions.find((list) => Array.isArray(list) && list.some((a) => a.id === 'demo_action')),
      'onActionReceived([{id:"demo_action"}])',
    );
    return { actions };
  });

  await step('on_conversation_update', async () => {
    await convA.sendMessage('title My title');
    const update = await waitFor(
      () => logA.updates.find((u) => u.type === 'title_changed'),
      'onConversationUpdate({type:"title_changed"})',
    );
    return { update, all_types: logA.updates.map((u) => u.type) };
  });

  await step('get_transcript', async () => ({ transcript: await convA.getTranscript() }));

  await step('edit_message', async () => {
    const before = await convA.getTranscript();
    const original = before.find((e) => e.from === 'user' && textOf(e.content) === 'hello');
    if (!original) throw new Error('no user entry "hello" in the transcript to edit');
    const resolved = await convA.editMessage(original.message_id, 'edited');
    const after = await convA.getTranscript();
    return {
      messageId: original.message_id,
      resolved: resolved === undefined ? null : resolved,
      entry: after.find((e) => e.message_id === original.message_id) || null,
      length_before: before.length,
      length_after: after.length,
    };
  });

  await step('create_bot_first', async () => {
    convB = await api1.createConversation(USER, { firstName: 'Bob' }, { topic: 'beta-npm', plan: 'free' }, 'bot-first');
    const id = convB.getConversationId();
    // onMessage can only be registered once createConversation resolved: the greeting may already be here.
    const logB = listen(convB);
    let live = null;
    try {
      live = await waitFor(() => logB.messages.find((m) => m.from === 'ai_agent'), 'the bot-first greeting', 3000);
    } catch (err) {
      live = null;
    }
    const onSocket = await waitFor(
      () =>
        frames.find(
          (f) => f.event && f.event.event_type === 'bot_message' && f.event.event_payload.conversation_id === id,
        ),
      'a bot_message frame of the bot-first conversation on the socket',
    );
    return {
      conversationId: id,
      greeting_via_onMessage: live,
      greeting_frame: onSocket.event,
      transcript: await convB.getTranscript(),
    };
  });

  await step('create_more', async () => {
    convC = await api1.createConversation(USER, {}, { topic: 'gamma-npm', plan: 'pro' }, 'user-first');
    api2 = await CaptivateChatAPI.create(KEY2);
    convD = await api2.createConversation(USER, {}, { topic: 'delta-npm', plan: 'pro' }, 'user-first');
    return { C: convC.getConversationId(), D: convD.getConversationId(), key2SocketActive: api2.isSocketActive() };
  });

  await step('general_error', async () => {
    // getConversation() gives back the cached object and re-attaches it as the socket's handler.
    convC = await api1.getConversation(convC.getConversationId());
    logC = listen(convC);
    // A 1.x-style client event over the WebSocket for a conversation that does not exist: general_error 404.
    api1.getSocket().send(
      JSON.stringify({
        action: 'sendMessage',
        event: {
          event_type: 'user_message',
          event_payload: {
            type: 'message_create',
            client_msg_id: 'interop-missing-1',
            conversation_id: 'no-such-conversation',
            content: { type: 'text', text: 'anyone?' },
          },
        },
      }),
    );
    const onError = await waitFor(
      () => logC.errors.find((e) => e.conversationId === 'no-such-conversation'),
      'onError({errorCode:404})',
    );
    const onMessage = await waitFor(
      () => logC.messages.find((m) => m.from === 'error'),
      'onMessage("[Error: ...]", "error")',
    );
    return { onError, onMessage };
  });

  await step('large_message_413', async () => {
    await convC.sendMessage('big');
    const big = await waitFor(
      () => logC.messages.find((m) => m.from === 'ai_agent' && (textOf(m.content) || '').length > 100000),
      'the large reply through the 413 message_link fallback',
      10000,
    );
    return {
      length: textOf(big.content).length,
      all_x: /^x+$/.test(textOf(big.content)),
      onError_codes: logC.errors.map((e) => e.errorCode),
      error_messages: logC.messages.filter((m) => m.from === 'error').map((m) => m.content),
    };
  });

  const ids = () => ({
    A: convA && convA.getConversationId(),
    B: convB && convB.getConversationId(),
    C: convC && convC.getConversationId(),
    D: convD && convD.getConversationId(),
  });
  results.ids = ids();

  const list = async (options) => describe(await api1.getUserConversations(options));
  const pro = { userId: USER, filter: { plan: 'pro' } };
  await step('list_v1', () => list(USER));
  await step('list_v2_page1', () => list({ ...pro, search: { topic: 'npm' }, pagination: { page: 1, limit: 1 } }));
  // numeric strings are allowed too
  await step('list_v2_page2', () => list({ ...pro, search: { topic: 'npm' }, pagination: { page: '2', limit: '1' } }));
  await step('list_v2_search', () => list({ ...pro, search: { topic: 'lph' }, pagination: { page: 1, limit: 10 } }));
  await step('list_multi_key', () => list({ userId: USER, apiKeys: [KEY1, KEY2] }));

  await step('manager', async () => {
    const manager = await CaptivateChatManager.create([KEY1, KEY2, KEY1]);
    const listed = await manager.getUserConversations({ userId: USER });
    return {
      ...describe(listed),
      instances: [KEY1, KEY2].map((k) => {
        const instance = manager.getApiInstance(k);
        return { key: label(k), present: !!instance, socketActive: !!instance && instance.isSocketActive() };
      }),
    };
  });

  await step('delete_conversation', async () => {
    const resolved = await convA.delete({ softDelete: true });
    const listed = await list(USER);
    let transcriptError = null;
    let transcript = null;
    try {
      transcript = await convA.getTranscript();
    } catch (err) {
      transcriptError = String(err.message || err);
    }
    return {
      resolved: resolved === undefined ? null : resolved,
      listed_ids: listed.ids,
      transcript_error: transcriptError,
      transcript,
    };
  });

  await step('delete_user_conversations', async () => {
    const resolved = await api1.deleteUserConversations(USER);
    const v1 = await list(USER);
    const multi = await list({ userId: USER, apiKeys: [KEY1, KEY2] });
    return {
      resolved: resolved === undefined ? null : resolved,
      v1_ids: v1.ids,
      multi_key_ids: multi.ids,
      multi_key_apiKeys: multi.apiKeys,
    };
  });

  // Last, because the refused client then retries every 3 s on its own.
  await step('bad_key', async () => {
    try {
      await CaptivateChatAPI.create(BAD_KEY);
      return { rejected: false };
    } catch (err) {
      const instance = CaptivateChatAPI.getInstance(BAD_KEY);
      if (instance) instance.dispose();
      return { rejected: true, message: String(err.message || err) };
    }
  });

  results.frames_seen = frames.map((f) => (f.event ? f.event.event_type : 'no-event'));
  for (const api of [api1, api2]) {
    if (api) api.dispose();
  }
}

run(main);
