'use strict';
/*
 * The npm client 7.0.0's static file manager, unchanged, against a recorder standing in for the Captivate
 * cloud's file service (CCA_FILES_URL): its fetch is pointed there, nothing else is reached.
 * Prints one JSON line: what each call returned (the FileInput as JSON.stringify writes it).
 */
const path = require('path');

const prefix = process.env.CCA_NPM_PREFIX;
const target = process.env.CCA_FILES_URL;
const realFetch = globalThis.fetch;
globalThis.fetch = (url, options) => {
  const address = String(url);
  if (!address.startsWith('https://file-to-text.prod.captivat.io/')) throw new Error(`refusing ${address}`);
  return realFetch(target + address.slice('https://file-to-text.prod.captivat.io'.length), options);
};
globalThis.WebSocket = require(path.join(prefix, 'node_modules', 'ws')); // the bundle wants one (unused here)
const { CaptivateChatFileManager } = require(path.join(prefix, 'node_modules', 'captivate-chat-api'));

(async () => {
  const notes = new File([Buffer.from(process.env.CCA_CONTENT)], 'my "notes".txt', { type: 'text/plain' });
  const stored = await CaptivateChatFileManager.create({ file: notes, apiKey: 'KEY', conversationId: 'CONV', ttlDays: 7 });
  const blob = new Blob([Buffer.from('xyz')]);
  const unstored = await CaptivateChatFileManager.create({ file: blob, storage: false, url: 'https://example.com/x', ttlDays: 5 });
  const url = await CaptivateChatFileManager.getSecureFileUrl('k1', 600);
  console.log(JSON.stringify({ stored: JSON.parse(JSON.stringify(stored)), unstored: JSON.parse(JSON.stringify(unstored)), url }));
})().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
