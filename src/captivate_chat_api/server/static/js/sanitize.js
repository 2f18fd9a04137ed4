// An allow-list HTML sanitizer for agent content (`table` and `html` messages).
//
// The markup is parsed by DOMParser into an inert document (no script runs, nothing loads), then copied
// node by node into fresh elements of the page: only the tags and attributes listed here survive, URLs
// must be http(s) (or mailto for links), and nothing is ever assigned through innerHTML. Unknown tags are
// unwrapped (their text stays); dangerous ones are dropped with everything inside them.

const GLOBAL_ATTRS = ["title", "lang", "dir"];
const ALLOWED = {
  a: ["href"], abbr: [], b: [], blockquote: [], br: [], caption: [], code: [], dd: [], del: [], div: [],
  dl: [], dt: [], em: [], h1: [], h2: [], h3: [], h4: [], h5: [], h6: [], hr: [], i: [],
  img: ["src", "alt", "width", "height"], ins: [], kbd: [], li: [], mark: [], ol: ["start"], p: [], pre: [],
  q: [], s: [], small: [], span: [], strong: [], sub: [], sup: [], table: [], tbody: [],
  td: ["colspan", "rowspan"], tfoot: [], th: ["colspan", "rowspan", "scope"], thead: [], tr: [], u: [], ul: [],
};
const DROPPED = new Set([
  "script", "style", "template", "iframe", "frame", "frameset", "object", "embed", "applet", "noscript",
  "svg", "math", "link", "meta", "base", "head", "title", "form", "input", "button", "select", "option",
  "textarea", "canvas", "audio", "video", "source", "track", "portal", "dialog",
]);
const NUMERIC = new Set(["colspan", "rowspan", "width", "height", "start"]);
const MAX_NODES = 5000;
const MAX_DEPTH = 40;

/** The URL if it is absolute with an allowed scheme (`http:`/`https:`, plus `mailto:` for links), else
 * null. Relative URLs are refused: agent content has no base of its own, and this page's is the gateway. */
export function safeUrl(value, { mailto = false } = {}) {
  let url;
  try {
    url = new URL(String(value).trim());
  } catch {
    return null;
  }
  const ok = url.protocol === "http:" || url.protocol === "https:" || (mailto && url.protocol === "mailto:");
  return ok ? url.href : null;
}

function copyAttribute(source, target, tag, name) {
  const value = source.getAttribute(name);
  if (value === null) return;
  if (NUMERIC.has(name)) {
    const n = Number.parseInt(value, 10);
    if (Number.isInteger(n) && n >= 0 && n <= 10000) target.setAttribute(name, String(n));
  } else if (name === "href" || name === "src") {
    const url = safeUrl(value, { mailto: tag === "a" });
    if (url) target.setAttribute(name, url);
  } else if (name === "scope") {
    if (["row", "col", "rowgroup", "colgroup"].includes(value)) target.setAttribute(name, value);
  } else {
    target.setAttribute(name, value.slice(0, 500));
  }
}

/** Sanitize `html` into a DocumentFragment of the current document. */
export function sanitizeHtml(html) {
  const parsed = new DOMParser().parseFromString(String(html), "text/html");
  const out = document.createDocumentFragment();
  let budget = MAX_NODES;

  const copyChildren = (from, to, depth) => {
    for (const node of Array.from(from.childNodes)) {
      if (budget-- <= 0) return;
      if (node.nodeType === Node.TEXT_NODE) {
        to.appendChild(document.createTextNode(node.data));
        continue;
      }
      if (node.nodeType !== Node.ELEMENT_NODE || depth >= MAX_DEPTH) continue;
      const tag = node.localName;
      if (DROPPED.has(tag) || node.namespaceURI !== "http://www.w3.org/1999/xhtml") continue;
      if (!Object.hasOwn(ALLOWED, tag)) {
        copyChildren(node, to, depth + 1); // unwrap: keep the text, lose the tag
        continue;
      }
      const element = document.createElement(tag);
      for (const name of [...GLOBAL_ATTRS, ...ALLOWED[tag]]) copyAttribute(node, element, tag, name);
      if (tag === "a" && !element.hasAttribute("href")) {
        copyChildren(node, to, depth + 1); // a link to nowhere (or to javascript:) is just its text
        continue;
      }
      if (tag === "a") {
        element.setAttribute("target", "_blank");
        element.setAttribute("rel", "noopener noreferrer nofollow");
      }
      if (tag === "img") {
        if (!element.hasAttribute("src")) continue;
        element.setAttribute("loading", "lazy");
        element.setAttribute("referrerpolicy", "no-referrer");
      }
      copyChildren(node, element, depth + 1);
      to.appendChild(element);
    }
  };

  copyChildren(parsed.body, out, 0);
  return out;
}
