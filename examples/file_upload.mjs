// The npm client 7.0.0's file manager against a gateway: upload a file into a conversation, send it, read
// it back from the transcript. Run:
//   npm install captivate-chat-api@7.0.0 ws
//   CAPTIVATE_API_KEY=cck_... CAPTIVATE_BASE_URL=http://127.0.0.1:8000 node file_upload.mjs
// The client has the cloud's URLs built in: they are pointed at the gateway before it is loaded.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const apiKey = process.env.CAPTIVATE_API_KEY || 'YOUR_API_KEY';
const base = (process.env.CAPTIVATE_BASE_URL || 'http://127.0.0.1:8000').replace(/\/$/, '');
const wsBase = base.replace(/^http/, 'ws');

const WS = require('ws');
globalThis.WebSocket = class extends WS {
  constructor(url, protocols) {
    super(String(url).replace(/^wss:\/\/[^/]+/, wsBase), protocols);
  }
};
const cloud = /^https:\/\/(channel\.(prod|dev)\.captivat\.io|file-to-text\.prod\.captivat\.io)/;
const realFetch = globalThis.fetch;
globalThis.fetch = (url, options) => realFetch(String(url).replace(cloud, base), options);

const { CaptivateChatAPI } = require('captivate-chat-api');

const watchdog = setTimeout(() => {
  console.error('no answer within 25 s');
  process.exit(1);
}, 25000);

const api = await CaptivateChatAPI.create(apiKey);
const conv = await api.createConversation('example-files-npm', {}, {}, 'user-first');
await conv.setTimeToLive(7);

const notes = new File(['Meeting notes: the launch moves to Thursday.\n'], 'notes.txt', { type: 'text/plain' });
const fileInput = await conv.fileManager.create({ file: notes });
console.log('extracted text:', fileInput.getTextContent().trim());
console.log('a fresh link:', await fileInput.refreshSecureUrl(600));

await conv.sendMessage({ type: 'text', text: 'Here are the notes', files: fileInput });
for (const entry of await conv.getTranscript()) {
  for (const file of entry.files || []) console.log(`${entry.from}: ${file.filename} -> ${file.storage?.presignedUrl}`);
}
clearTimeout(watchdog);
api.dispose();
process.exit(0); // createConversation leaves a 10 s timer behind: do not wait for it
