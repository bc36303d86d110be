// Tiny DOM helpers. Every string that reaches the page goes through textContent or an attribute setter:
// names come from profiled programs and are never parsed as HTML.

type Child = Node | string | null | undefined | false;
type Attrs = Record<string, string | number | boolean | EventListener | undefined>;

/** An element with attributes (`on*` keys become listeners) and children (strings become text nodes). */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "class") {
      el.className = String(value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, ...children);
  return el;
}

/** Appends children; strings become text nodes (never markup). */
export function append(el: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
  }
}

/** Replaces all children of `el`. */
export function replace(el: Node, ...children: Child[]): void {
  while (el.firstChild) el.removeChild(el.firstChild);
  append(el, ...children);
}

export type StatusKind = "loading" | "empty" | "error" | "none";

/** Shows a status box (loading, empty, error) with a title and a hint telling the user what to do. */
export function status(el: HTMLElement, kind: StatusKind, title = "", hint = ""): void {
  el.className = `status status-${kind}`;
  el.hidden = kind === "none";
  el.dataset.status = kind;
  replace(el, kind === "none" ? null : h("strong", {}, title), hint ? h("p", {}, hint) : null);
}
