// Conversation rows shared by the chat and the console: a message (avatar and sender name on the first
// of a run from one sender, then the bubble), and a centred note (system, error, agent action).

import { icon } from "./icons.js";
import { el } from "./render.js";

/**
 * @param {Element} where the container
 * @param {string} from a CSS-level sender: user | bot | human
 * @param {Node} body the bubble's content
 * @param {{label?: string, icon?: string}} sender how the sender is shown (no label: none)
 */
export function messageRow(where, from, body, sender = {}) {
  const previous = where.lastElementChild;
  const continues = Boolean(previous && previous.dataset.from === from);
  const row = el("div", { class: `row row--${from}${continues ? " row--cont" : ""}`, "data-from": from });
  if (sender.icon) row.append(el("span", { class: `avatar avatar--${from}`, "aria-hidden": "true" }, continues ? null : icon(sender.icon)));
  const column = el("div", { class: "row__col" });
  if (!continues && sender.label) column.append(el("div", { class: "row__sender" }, sender.label));
  column.append(el("div", { class: "bubble" }, body));
  row.append(column);
  where.append(row);
  return row;
}

/** A centred line: `system` (hand-offs and the like), `error`, or `event` (with collapsible details). */
export function noteRow(where, kind, text, details = null) {
  const row = el("div", { class: `row row--${kind}`, "data-from": kind, role: kind === "error" ? "alert" : null });
  row.append(details ? el("details", {}, el("summary", {}, text), el("pre", {}, details)) : el("span", {}, text));
  where.append(row);
  return row;
}
