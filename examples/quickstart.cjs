const WS = require('ws');
const base = process.env.CAPTIVATE_BASE_URL || 'http://127.0.0.1:8000';
const wsBase = base.replace(/^http/, 'ws');
globalThis.WebSocket = class extends WS {
  constructor(url, protocols) { super(url.replace(/^wss:\/\/[^/]+/, wsBase), protocols); }
};
const cloudFetch = globalThis.fetch;
globalThis.fetch = (url, options) =>
  cloudFetch(String(url).replace(/^https:\/\/channel\.(prod|dev)\.captivat\.io/, base), options);
const { CaptivateChatAPI } = require('captivate-chat-api');

async function main() {
  const api = await CaptivateChatAPI.create(process.env.CAPTIVATE_API_KEY);
  const conversation = await api.createConversation('user-1', { name: 'Ada' }, {}, 'user-first');
  conversation.onMessage((content, kind) => {
    console.log(kind, content.text);
    api.dispose();
    process.exit(0); // createConversation leaves a 10 s timer of the client's behind: do not wait for it
  });
  await conversation.sendMessage('Hello!');
}
main();
