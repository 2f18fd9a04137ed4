// The npm client 7.0.0 against the gateway: a conversation, callbacks, metadata and the transcript.
// CommonJS (it uses require): save as app.js or app.cjs; `npm install captivate-chat-api@7.0.0`.
const WS = require('ws');

const base = process.env.CAPTIVATE_BASE_URL || 'http://127.0.0.1:8000';
const wsBase = base.replace(/^http/, 'ws');
// The client has the cloud's URLs built in: point its WebSocket and fetch at the gateway before loading it.
globalThis.WebSocket = class extends WS {
  constructor(url, protocols) { super(url.replace(/^wss:\/\/[^/]+/, wsBase), protocols); }
};
const cloudFetch = globalThis.fetch;
globalThis.fetch = (url, options) =>
  cloudFetch(String(url).replace(/^https:\/\/channel\.(prod|dev)\.captivat\.io/, base), options);
const { CaptivateChatAPI } = require('captivate-chat-api');

async function main() {
  const api = await CaptivateChatAPI.create(process.env.CAPTIVATE_API_KEY || 'YOUR_API_KEY');
  const conversation = await api.createConversation('user-1', { name: 'Ada' }, { plan: 'pro' }, 'user-first');
  const replied = new Promise((resolve) => conversation.onMessage((content, kind) => resolve([kind, content])));
  conversation.onError((error) => console.error('error', error));
  await conversation.sendMessage('hi');
  const [kind, content] = await replied;
  console.log(kind, content.text);                      // ai_agent You said: hi
  await conversation.setMetadata({ plan: 'enterprise' });
  console.log('metadata', await conversation.getMetadata());
  console.log('transcript entries', (await conversation.getTranscript()).length);
  api.dispose();
  process.exit(0); // createConversation leaves a 10 s timer of the client's behind: do not wait for it
}

main().catch((error) => { console.error(error); process.exit(1); });
