'use strict';
/*
 * The npm client's half of the wire conformance test: drives the published `captivate-chat-api` (unchanged,
 * redirected by npm_harness.cjs) through one fixed sequence of calls against CCA_PORT, a recording tee in front
 * of a gateway. Before each call it names the step on the recorder's control port (CCA_CONTROL_PORT), so every
 * recorded request is labelled with the call that sent it. The call arguments come from CCA_INPUTS (JSON), the
 * same ones the Python SDK is given.
 *
 * Environment: CCA_NPM_PREFIX, CCA_PORT, CCA_CONTROL_PORT, CCA_KEY1, CCA_KEY2, CCA_INPUTS.
 * Output (last line of stdout): {step: result or {error}, ..., _meta}; ids are reported so that the test can
 * recognise them on the wire.
 */

const { need, redirectToGateway, loadClient, runner } = require('./npm_harness.cjs');

const PREFIX = need('CCA_NPM_PREFIX');
const PORT = need('CCA_PORT');
const CONTROL_PORT = need('CCA_CONTROL_PORT');
const KEY1 = need('CCA_KEY1');
const KEY2 = need('CCA_KEY2');
const INPUTS = JSON.parse(need('CCA_INPUTS'));
const WATCHDOG_MS = Number(process.env.CCA_WATCHDOG_MS || 30000);

function label(key) {
  if (key === KEY1) return 'key1';
  if (key === KEY2) return 'key2';
  return key === undefined ? undefined : 'other';
}

const { seen, realFetch } = redirectToGateway({ prefix: PREFIX, port: PORT, label });
const client = loadClient(PREFIX);
const { CaptivateChatAPI } = client.exports;

const { step, run } = runner({
  watchdogMs: WATCHDOG_MS,
  meta: () => ({ package_version: client.version, node: process.version, redirected: seen }),
});

async function mark(name) {
  const response = await realFetch(`http://127.0.0.1:${CONTROL_PORT}/mark/${encodeURIComponent(name)}`);
  if (response.status !== 204) throw new Error(`the recorder refused the step mark: HTTP ${response.status}`);
}

/** One client call, labelled on the recorder first. */
function wireStep(name, fn) {
  return step(name, async () => {
    await mark(name);
    return fn();
  });
}

async function main() {
  const I = INPUTS;
  let api;
  let convA;
  let convB;
  let helloId;

  await wireStep('connect', async () => {
    api = await CaptivateChatAPI.create(KEY1);
    return { socketId: await api.getSocketId() };
  });
  if (!api) return;

  await wireStep('create_user_first', async () => {
    convA = await api.createConversation(I.user_id, I.user_info, I.metadata, 'user-first', I.private_metadata);
    return { conversationId: convA.getConversationId() };
  });
  await wireStep('create_bot_first', async () => {
    convB = await api.createConversation(I.user_id, I.bot_user_info, I.bot_metadata, 'bot-first');
    return { conversationId: convB.getConversationId() };
  });
  if (!convA) return;

  await wireStep('send_message_string', async () => {
    const ack = await convA.sendMessage(I.text);
    helloId = ack && ack.message_id;
    return { messageId: helloId };
  });
  await wireStep('send_message_object', () => convA.sendMessage(I.object_message));
  await wireStep('set_metadata', () => convA.setMetadata(I.metadata_update));
  await wireStep('set_private_metadata', () => convA.setPrivateMetadata(I.private_update));
  await wireStep('get_metadata', async () => ({ metadata: await convA.getMetadata() }));
  await wireStep('send_action', () => convA.sendAction(I.action_id, I.action_data));
  await wireStep('edit_message', () => convA.editMessage(helloId, I.edited_text));
  await wireStep('get_transcript', async () => ({ length: (await convA.getTranscript()).length }));
  await wireStep('list_v1', async () => ({ count: (await api.getUserConversations(I.user_id)).conversations.length }));
  await wireStep('list_v2', async () => {
    const listed = await api.getUserConversations({
      userId: I.user_id,
      filter: I.filter,
      search: I.search,
      pagination: I.pagination,
      apiKeys: [KEY1, KEY2],
    });
    return { count: listed.conversations.length };
  });
  await wireStep('list_v2_filter_only', async () => {
    const listed = await api.getUserConversations({ userId: I.user_id, filter: I.filter });
    return { count: listed.conversations.length };
  });
  await wireStep('set_time_to_live', () => convA.setTimeToLive(I.ttl_days));
  await wireStep('delete_conversation', () => convA.delete({ softDelete: true }));
  await wireStep('delete_user_conversations', () => api.deleteUserConversations(I.user_id));
  await wireStep('disconnect', async () => {
    const socket = api.getSocket();
    const closed = new Promise((resolve) => socket.addEventListener('close', resolve));
    await api.dispose();
    await closed; // the close handshake is done: the recorder has seen the client's close frame
  });
}

run(main);
