// Small DOM helpers. Every value from the API is put in the page as text (textContent,
// attributes), never as HTML: a checkpoint's fields are data from a file, not markup.

export type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

/** `h("td", {class: "num"}, "3")`: an element with attributes, listeners (`on…`) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") {
      el.addEventListener(k.slice(2), v);
    } else if (v === true) {
      el.setAttribute(k, "");
    } else {
      el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

export function append(el: Node, children: (Child | Child[])[]): void {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
  }
}

export function clear(el: Element): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

export function fmtBytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let v = n;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[u]}`;
}

export function fmtCount(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return "";
  return n.toLocaleString("en-US");
}

/** A value as a table cell shows it: numbers to 6 significant digits, objects as JSON. */
export function fmtValue(v: unknown): string {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") {
    if (Number.isInteger(v)) return String(v);
    const s = v.toPrecision(6);
    return String(Number(s));
  }
  if (typeof v === "string") return v;
  if (typeof v === "boolean") return v ? "true" : "false";
  if (typeof v === "object" && v !== null && "name" in v && typeof (v as { name: unknown }).name === "string") {
    return (v as { name: string }).name;
  }
  return JSON.stringify(v);
}

/** A field path's value in an entry: `metrics.val_loss`, `hparams.optimizer.lr`. */
export function getPath(obj: unknown, path: string): unknown {
  let cur: unknown = obj;
  for (const part of splitPath(obj, path)) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

/**
 * Metric names may contain dots or slashes (`val/hmean`, `val.loss`): after a top-level
 * `metrics.`, the rest is one key when the entry has it.
 */
function splitPath(obj: unknown, path: string): string[] {
  const i = path.indexOf(".");
  if (i > 0 && obj && typeof obj === "object") {
    const head = path.slice(0, i);
    const rest = path.slice(i + 1);
    const sub = (obj as Record<string, unknown>)[head];
    if (sub && typeof sub === "object" && rest in (sub as object)) return [head, rest];
  }
  return path.split(".");
}

/** Every leaf of a JSON value, as (dotted path, value); arrays are leaves. */
export function leaves(v: unknown, prefix = "", out: [string, unknown][] = []): [string, unknown][] {
  if (v !== null && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length > 0) {
    for (const [k, sub] of Object.entries(v as Record<string, unknown>)) {
      leaves(sub, prefix ? `${prefix}.${k}` : k, out);
    }
  } else if (prefix) {
    out.push([prefix, v]);
  }
  return out;
}

/** The shell spelling of one argument (single quotes unless it is plainly safe). */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_\-./=:@+,]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Copies text to the clipboard: the Clipboard API where allowed, else a selected textarea. */
export async function copyText(text: string): Promise<boolean> {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // fall through to the textarea
  }
  const ta = h("textarea", { style: "position:fixed;left:-9999px;top:0" });
  ta.value = text;
  document.body.appendChild(ta);
  ta.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  ta.remove();
  return ok;
}

/** A button that copies a CLI command, and shows it. */
export function copyButton(cmd: string): HTMLElement {
  const btn = h("button", { class: "copy", type: "button", title: "Copy to the clipboard", "data-command": cmd }, "copy");
  btn.addEventListener("click", async () => {
    const ok = await copyText(cmd);
    btn.textContent = ok ? "copied" : "select it";
    window.setTimeout(() => (btn.textContent = "copy"), 1500);
  });
  return h("div", { class: "cmd" }, h("code", {}, cmd), btn);
}

/** The page's hash route and its parameters (`#/checkpoint?path=…`). */
export function currentRoute(): { page: string; params: URLSearchParams } {
  const hash = location.hash.replace(/^#/, "") || "/";
  const q = hash.indexOf("?");
  const page = q >= 0 ? hash.slice(0, q) : hash;
  const params = new URLSearchParams(q >= 0 ? hash.slice(q + 1) : "");
  return { page, params };
}

export function routeHref(page: string, params: [string, string][] = []): string {
  const sp = new URLSearchParams();
  for (const [k, v] of params) sp.append(k, v);
  const s = sp.toString();
  return `#${page}${s ? "?" + s : ""}`;
}

export function checkpointHref(path: string): string {
  return routeHref("/checkpoint", [["path", path]]);
}

/** The last part of a path (the file's name). */
export function basename(p: string): string {
  const parts = p.split("/").filter((x) => x !== "");
  return parts.length ? parts[parts.length - 1] : p;
}

export function errorBox(title: string, message: string): HTMLElement {
  return h("div", { class: "error", role: "alert" }, h("strong", {}, title), " ", message);
}
