// Message content (PROTOCOL.md section 5) to DOM: text, button, cards, table, html, files, and any custom
// object (shown as its JSON). Everything from the network goes in as text or through sanitizeHtml.

import { fileList, fileName, fileUrl, formatSize, freshUrl } from "./files.js";
import { icon } from "./icons.js";
import { safeUrl, sanitizeHtml } from "./sanitize.js";

const LONG_TEXT = 3000;
const URL_IN_TEXT = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/g;

/** A small helper: `el("div", {class: "x"}, child, "text")`. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** Plain text with its http(s) links made clickable. */
export function linkify(text) {
  const fragment = document.createDocumentFragment();
  let last = 0;
  for (const match of String(text).matchAll(URL_IN_TEXT)) {
    fragment.append(text.slice(last, match.index));
    const href = safeUrl(match[0]);
    fragment.append(href ? el("a", { href, target: "_blank", rel: "noopener noreferrer nofollow" }, match[0]) : match[0]);
    last = match.index + match[0].length;
  }
  fragment.append(String(text).slice(last));
  return fragment;
}

function textBlock(text) {
  const full = String(text);
  if (full.length <= LONG_TEXT) return el("p", { class: "m-text" }, linkify(full));
  const block = el("p", { class: "m-text" }, full.slice(0, LONG_TEXT) + "…");
  const more = el("button", { type: "button", class: "link m-more" }, `Show all ${full.length.toLocaleString("en")} characters`);
  more.addEventListener("click", () => {
    block.replaceChildren(linkify(full));
    more.remove();
  });
  return el("div", {}, block, more);
}

function optionOf(option) {
  if (typeof option !== "object" || option === null) return { label: String(option), text: String(option) };
  const label = String(option.label ?? option.title ?? option.text ?? option.value ?? option.id ?? "Option");
  const action = option.action && typeof option.action === "object" ? option.action : null;
  if (action && action.id) return { label, action: { id: String(action.id), data: action.data ?? {} } };
  if (option.type === "action" && option.id) return { label, action: { id: String(option.id), data: option.data ?? {} } };
  return { label, text: String(option.value ?? option.text ?? label) };
}

function buttons(content, ctx) {
  const spec = content.buttons ?? {};
  const list = Array.isArray(spec) ? spec : Array.isArray(spec.options) ? spec.options : [];
  const title = Array.isArray(spec) ? content.title : spec.title;
  const row = el("div", { class: "m-buttons", role: "group", "aria-label": title ? String(title) : "Options" });
  for (const option of list.map(optionOf)) {
    const button = el("button", { type: "button", class: "chip", disabled: !ctx.onChoose }, option.label);
    if (ctx.onChoose) button.addEventListener("click", () => ctx.onChoose(option));
    row.append(button);
  }
  return el("div", {}, title ? el("p", { class: "m-text" }, String(title)) : null, row);
}

function card(item) {
  const link = item.link ? safeUrl(item.link) : null;
  const src = item.image_url ? safeUrl(item.image_url) : null;
  const image = src ? el("img", { class: "card__image", src, alt: "", loading: "lazy", referrerpolicy: "no-referrer" }) : null;
  if (image) image.addEventListener("error", () => image.remove()); // a broken image is worse than none
  return el(
    "article",
    { class: "card" },
    image,
    el(
      "div",
      { class: "card__body" },
      item.text ? el("h3", { class: "card__title" }, String(item.text)) : null,
      item.description ? el("p", { class: "card__text" }, String(item.description)) : null,
      link ? el("a", { class: "card__link", href: link, target: "_blank", rel: "noopener noreferrer nofollow" }, "Open ↗") : null,
    ),
  );
}

/** Open a stored file's link, signing it again first if it is about to expire. */
async function openFile(event, file, link) {
  if (link.dataset.fresh === "1") return; // just re-signed: let the click through
  event.preventDefault();
  try {
    const href = safeUrl(await freshUrl(file));
    if (!href) return;
    link.href = href;
    link.dataset.fresh = "1";
    link.click();
    setTimeout(() => delete link.dataset.fresh, 1000);
  } catch (err) {
    link.title = `This file could not be opened: ${err.message}`;
  }
}

/** A message's files: name, type and size, each a download link. */
export function files(value) {
  return el(
    "ul",
    { class: "m-files" },
    fileList(value).map((file) => {
      const url = safeUrl(fileUrl(file) || "");
      const name = fileName(file);
      const label = el("span", { class: "m-file__name" }, name);
      const size = file.storage && Number.isFinite(file.storage.fileSize) ? formatSize(file.storage.fileSize) : "";
      const details = [file.type, size].filter(Boolean).join(" · ");
      const meta = details ? el("span", { class: "m-file__type" }, details) : null;
      if (!url) return el("li", { class: "m-file" }, el("span", {}, icon("file"), label), meta);
      const link = el("a", { href: url, target: "_blank", rel: "noopener noreferrer nofollow", download: name, class: "m-file__link" }, icon("file"), label);
      if (file.storage && file.storage.fileKey) link.addEventListener("click", (event) => openFile(event, file, link));
      return el("li", { class: "m-file" }, link, meta);
    }),
  );
}

function custom(content) {
  const type = typeof content.type === "string" ? content.type : "object";
  return el("details", { class: "m-custom" }, el("summary", {}, `Custom message: ${type}`), el("pre", {}, JSON.stringify(content, null, 2)));
}

function one(content, ctx) {
  if (content === null || content === undefined) return null;
  if (typeof content !== "object") return textBlock(content);
  switch (content.type) {
    case "text":
      return el("div", {}, content.text || !fileList(content.files).length ? textBlock(content.text ?? "") : null, fileList(content.files).length ? files(content.files) : null);
    case "button":
    case "buttons":
      return buttons(content, ctx);
    case "cards":
      return el("div", { class: "m-cards" }, (Array.isArray(content.cards) ? content.cards : []).map(card));
    case "table":
      return el("div", { class: "m-html m-table" }, sanitizeHtml(content.table ?? ""));
    case "html":
      return el("div", { class: "m-html" }, sanitizeHtml(content.html ?? ""));
    case "files":
    case "file":
      return files(content.type === "files" ? content.files : content);
    default:
      if (content.type === undefined && typeof content.text === "string") return textBlock(content.text);
      return custom(content);
  }
}

/** Render message content (an object, a list of them, or a string). `ctx.onChoose(option)` makes buttons live. */
export function renderContent(content, ctx = {}) {
  const fragment = document.createDocumentFragment();
  for (const part of Array.isArray(content) ? content : [content]) {
    const node = one(part, ctx);
    if (node) fragment.append(node);
  }
  return fragment;
}

/** The text of content, for transcripts and previews. */
export function contentText(content) {
  if (content === null || content === undefined) return "";
  if (typeof content !== "object") return String(content);
  if (Array.isArray(content)) return content.map(contentText).join("\n");
  const attached = fileList(content.files).map((f) => `[file: ${fileName(f)}${fileUrl(f) ? ` ${fileUrl(f)}` : ""}]`);
  if (typeof content.text === "string") return [content.text, ...attached].filter(Boolean).join(" ");
  if (content.type === "button") return `[buttons] ${JSON.stringify(content.buttons)}`;
  return `[${content.type ?? "object"}] ${JSON.stringify(content)}`;
}

/** True for the empty text a bot-first start sends (it is not something the user said). */
export function isEmptyText(content) {
  return Boolean(content && typeof content === "object" && content.type === "text" && !String(content.text ?? "").trim() && !fileList(content.files).length);
}
