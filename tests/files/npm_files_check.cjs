'use strict';
/*
 * Drives the file calls of the published npm client `captivate-chat-api` 7.0.0 (installed, unchanged) against a
 * local gateway: conversation.fileManager.create/createFile/createMultiple, storage:false with url,
 * refreshSecureUrl, CaptivateChatFileManager.getSecureFileUrl, setTimeToLive, sendMessage with files in the three
 * forms, getTranscript with the URL refresh; uploads of another tenant's conversation and an oversize file.
 *
 * Environment: CCA_NPM_PREFIX, CCA_PORT, CCA_KEY1, CCA_KEY2, CCA_BAD_KEY, CCA_SAMPLES (a folder of sample files),
 * CCA_WORD (the word each sample holds), CCA_OVERSIZE (bytes of the too-large upload).
 * Output: one JSON object on the last line of stdout, one field per step (see ../interop/npm_harness.cjs).
 */

const fs = require('fs');
const path = require('path');
const { need, redirectToGateway, loadClient, runner } = require('../interop/npm_harness.cjs');

const PREFIX = need('CCA_NPM_PREFIX');
const PORT = need('CCA_PORT');
const KEY1 = need('CCA_KEY1');
const KEY2 = need('CCA_KEY2');
const BAD_KEY = need('CCA_BAD_KEY');
const SAMPLES = need('CCA_SAMPLES');
const WORD = need('CCA_WORD');
const OVERSIZE = Number(need('CCA_OVERSIZE'));

function label(key) {
  return { [KEY1]: 'key1', [KEY2]: 'key2', [BAD_KEY]: 'bad_key' }[key] || 'other';
}

const { seen, realFetch } = redirectToGateway({ prefix: PREFIX, port: PORT, label });
const client = loadClient(PREFIX);
const { CaptivateChatAPI, CaptivateChatFileManager } = client.exports;
const { step, run } = runner({
  watchdogMs: Number(process.env.CCA_WATCHDOG_MS || 90000),
  meta: () => ({ package_version: client.version, fetches: seen.fetch.map((f) => `${f.method} ${f.to.replace(/^http:\/\/127\.0\.0\.1:\d+/, '')}`) }),
});

function sample(name) {
  return new File([fs.readFileSync(path.join(SAMPLES, name))], name);
}

function summary(file) {
  return {
    filename: file.filename,
    type: file.type,
    hasWord: (file.textContent.text || '').includes(WORD),
    source: file.textContent.metadata.source,
    storage: file.storage || null,
    url: file.url || null,
    keys: Object.keys(file),
  };
}

async function download(url) {
  const response = await realFetch(url);
  const body = Buffer.from(await response.arrayBuffer());
  return {
    status: response.status,
    disposition: response.headers.get('content-disposition'),
    nosniff: response.headers.get('x-content-type-options'),
    contentType: response.headers.get('content-type'),
    bytes: body.length,
  };
}

function waitFor(predicate, what, ms = 8000) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const tick = () => {
      const found = predicate();
      if (found) resolve(found);
      else if (Date.now() - started > ms) reject(new Error(`timeout after ${ms} ms waiting for ${what}`));
      else setTimeout(tick, 25);
    };
    tick();
  });
}

const echoes = []; // every message the conversation's onMessage received

/** What the agent said after ``since`` echoes, once its ``Files received`` message is there. */
async function agentSaid(since) {
  const mine = () => echoes.slice(since).filter((e) => e.from === 'ai_agent').map((e) => e.content && e.content.text);
  await waitFor(() => mine().some((t) => /^Files received/.test(t || '')), 'the agent\'s "Files received" reply');
  return mine();
}

run(async () => {
  let api1;
  let api2;
  let conv;
  let other;
  let pdfInput;
  let multi;

  await step('connect', async () => {
    api1 = await CaptivateChatAPI.create(KEY1);
    conv = await api1.createConversation('files-user', { firstName: 'Fay' }, {}, 'user-first');
    conv.onMessage((content, from) => echoes.push({ content, from }));
    return { conversationId: conv.getConversationId() };
  });
  if (!conv) return;

  await step('create', async () => {
    pdfInput = await conv.fileManager.create({ file: sample('report.pdf') });
    return {
      type: pdfInput.type,
      length: pdfInput.length,
      filename: pdfInput.getFilename(),
      fileType: pdfInput.getFileType(),
      hasWord: pdfInput.getTextContent().includes(WORD),
      first: summary(pdfInput.files[0]),
    };
  });

  await step('create_file_each_type', async () => {
    const out = {};
    for (const name of fs.readdirSync(SAMPLES).sort()) {
      out[name] = summary(await conv.fileManager.createFile({ file: sample(name) }));
    }
    return out;
  }, 60000);

  await step('nameless_blob', async () => {
    const bytes = fs.readFileSync(path.join(SAMPLES, 'letter.docx'));
    const fi = await conv.fileManager.create({ file: new Blob([bytes]) });
    return summary(fi.files[0]);
  });

  await step('create_multiple', async () => {
    multi = await conv.fileManager.createMultiple({ files: [sample('notes.txt'), sample('data.csv')] });
    return { length: multi.length, files: multi.files.map(summary) };
  });

  await step('storage_false_with_url', async () => {
    const fi = await conv.fileManager.create({ file: sample('notes.txt'), storage: false, url: 'https://example.org/notes.txt' });
    return summary(fi.files[0]);
  });

  await step('refresh_secure_url', async () => {
    const url = await pdfInput.refreshSecureUrl(600);
    return { url, download: await download(url) };
  });

  await step('get_secure_file_url', async () => {
    const url = await CaptivateChatFileManager.getSecureFileUrl(pdfInput.files[0].storage.fileKey, 120);
    return { url, download: await download(url) };
  });

  await step('presign_unknown_key', async () => {
    try {
      await CaptivateChatFileManager.getSecureFileUrl(`${pdfInput.files[0].storage.fileKey}x`, 120);
      return { refused: false };
    } catch (err) {
      return { refused: true, message: String(err.message) };
    }
  });

  await step('set_time_to_live', async () => {
    await conv.setTimeToLive(7);
    const fi = await conv.fileManager.create({ file: sample('notes.txt') });
    return { fileKey: fi.files[0].storage.fileKey, expiresIn: fi.files[0].storage.expiresIn };
  });

  await step('send_wrapper', async () => {
    const since = echoes.length;
    await conv.sendMessage({ type: 'text', text: 'wrapper form', files: pdfInput });
    return agentSaid(since);
  });

  await step('send_list', async () => {
    const since = echoes.length;
    await conv.sendMessage({ type: 'text', text: 'list form', files: multi.files });
    return agentSaid(since);
  });

  await step('send_one_object', async () => {
    const since = echoes.length;
    await conv.sendMessage({ type: 'text', text: '', files: pdfInput.files[0] });
    return agentSaid(since);
  });

  await step('send_expiring', async () => {
    // a file whose URL expires within the client's 300 s window: getTranscript() must refresh it
    const file = { ...pdfInput.files[0], file: undefined, storage: { ...pdfInput.files[0].storage, presignedUrl: 'stale', expiresIn: Math.floor(Date.now() / 1000) + 30 } };
    await conv.sendMessage({ type: 'text', text: 'expiring form', files: [file] });
    return { ok: true };
  });

  await step('get_transcript', async () => {
    const transcript = await conv.getTranscript();
    return transcript.filter((m) => m.files).map((m) => ({ text: m.content && m.content.text, files: m.files.map(summary) }));
  });

  await step('get_transcript_after_refresh', async () => {
    const transcript = await conv.getTranscript();
    const entry = transcript.find((m) => m.content && m.content.text === 'expiring form');
    const file = entry.files[0];
    return { expiresIn: file.storage.expiresIn, presignedUrl: file.storage.presignedUrl, download: await download(file.storage.presignedUrl) };
  });

  await step('cross_tenant_upload', async () => {
    api2 = await CaptivateChatAPI.create(KEY2);
    other = await api2.createConversation('other-user', {}, {}, 'user-first');
    const tries = {
      key2_on_key1_conversation: { apiKey: KEY2, conversationId: conv.getConversationId() },
      key1_on_key2_conversation: { apiKey: KEY1, conversationId: other.getConversationId() },
      bad_key: { apiKey: BAD_KEY, conversationId: conv.getConversationId() },
      unknown_conversation: { apiKey: KEY1, conversationId: 'no-such-conversation' },
      no_path: {},
    };
    const out = {};
    for (const [name, owner] of Object.entries(tries)) {
      try {
        await CaptivateChatFileManager.create({ file: sample('notes.txt'), ...owner });
        out[name] = { refused: false };
      } catch (err) {
        out[name] = { refused: true, message: String(err.message) };
      }
    }
    return out;
  }, 30000);

  await step('oversize', async () => {
    try {
      await conv.fileManager.create({ file: new File([Buffer.alloc(OVERSIZE, 97)], 'big.txt') });
      return { refused: false };
    } catch (err) {
      return { refused: true, message: String(err.message) };
    }
  });

  await step('after_oversize', async () => {
    const fi = await conv.fileManager.createFile({ file: sample('notes.txt') });
    return summary(fi);
  });

  api1.dispose && api1.dispose();
  api2 && api2.dispose && api2.dispose();
});
