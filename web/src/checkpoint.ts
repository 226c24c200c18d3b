// The checkpoint page (`#/checkpoint?path=…`): the entry's every field with its source and
// conflicts, then what /api/detail adds (inspect, scan, identity), each part shown or its own
// error shown — one failing part never blanks the others.

import { api, describe, type Detail, type Entry } from "./api";
import { badges } from "./catalog";
import { pruneCard, sidecarCard } from "./writes";
import { basename, clear, copyButton, errorBox, fmtBytes, fmtCount, fmtValue, h, leaves, routeHref, shellQuote } from "./util";

/** The checkpoint page shown (its path and where it is drawn), for live events. */
let shown: { path: string; root: HTMLElement; params: URLSearchParams } | null = null;

/**
 * A live event while a checkpoint page is open: when it is about the checkpoint shown, a
 * banner says so — changed on disk (with a button showing it again) or deleted. The page is
 * not redrawn under the reader's eyes.
 */
export function checkpointEvent(kind: string, data: { entry?: Entry; path?: string }): void {
  if (!shown || !shown.root.isConnected || !shown.root.querySelector("#checkpoint-title")) return;
  const path = data.entry?.path ?? data.path;
  if (path !== shown.path || (kind !== "changed" && kind !== "removed")) return;
  const { root, params } = shown;
  root.querySelector("#checkpoint-live")?.remove();
  const banner =
    kind === "removed"
      ? h("div", { class: "error", id: "checkpoint-live", "data-kind": "removed" }, "This checkpoint was deleted from disk.")
      : h(
          "div",
          { class: "card warnings", id: "checkpoint-live", "data-kind": "changed" },
          "This checkpoint changed on disk. ",
          h("button", { type: "button", onclick: () => void renderCheckpoint(root, params) }, "show it again"),
        );
  root.prepend(banner);
}

/** `notice`: a line shown at the top (what a write just did; the page is shown again after it). */
export async function renderCheckpoint(root: HTMLElement, params: URLSearchParams, notice?: string): Promise<void> {
  const path = params.get("path");
  clear(root);
  shown = path ? { path, root, params } : null;
  if (!path) {
    root.append(errorBox("No checkpoint:", "the page needs ?path="));
    return;
  }
  root.append(h("div", { class: "status" }, "loading…"));
  let entry: Entry | null = null;
  let detail: Detail | null = null;
  let detailError: string | null = null;
  try {
    detail = await api<Detail>("/api/detail", [["path", path]]);
    entry = detail.entry;
  } catch (e) {
    detailError = describe(e);
    try {
      entry = await api<Entry>("/api/checkpoint", [["path", path]]);
    } catch (e2) {
      clear(root);
      root.append(errorBox("This checkpoint could not be loaded:", describe(e2)));
      return;
    }
  }
  clear(root);
  const q = shellQuote(entry.path);
  root.append(
    h(
      "div",
      { class: "page-head" },
      h("h2", { id: "checkpoint-title", title: entry.path }, basename(entry.path), " ", badges(entry)),
      h("div", { class: "muted path" }, entry.path),
      h(
        "div",
        { class: "links" },
        h("a", { href: routeHref("/curves", [["path", entry.path]]) }, "curves of this run"),
        " · ",
        h("a", { href: "#/" }, "catalog"),
      ),
    ),
    section(
      "Commands",
      h(
        "div",
        { class: "commands" },
        copyButton(`ckpt inspect ${q}`),
        copyButton(`ckpt scan ${q}`),
        copyButton(`ckpt hash ${q}`),
        copyButton(`ckpt dump ${q}`),
        copyButton(`ckpt catalog --format json ${q}`),
      ),
    ),
  );
  if (notice) root.append(h("p", { class: "ok card", id: "write-done" }, notice));
  if (entry.error) root.append(errorBox("This file could not be read:", entry.error));
  if (detailError) root.append(errorBox("Details unavailable:", `${detailError} — the catalog's entry is shown.`));

  root.append(section("Fields", fieldsTable(entry), "fields"));
  if (Object.keys(entry.hparams ?? {}).length) {
    root.append(section("Hyperparameters", tree(entry.hparams), "hparams"));
  }
  const folder = entry.path.includes("/") ? entry.path.slice(0, entry.path.lastIndexOf("/")) : ".";
  const reload = (done: string) => void renderCheckpoint(root, params, done);
  const writes = section(
    "Write",
    h("div", {}, sidecarCard(entry.path, reload), h("hr", {}), pruneCard(folder, entry.monitor, entry.mode, () => (location.hash = "#/"))),
    "writes",
  );
  if (!detail) {
    root.append(writes);
    return;
  }

  const inspect = first(detail.inspect);
  const scan = first(detail.scan);
  const identity = first(detail.identity);
  root.append(section("Security", partOrError(scan, securityView), "security"));
  root.append(section("Identity", partOrError(identity, identityView), "identity"));
  root.append(section("Callbacks", partOrError(inspect, callbacksView), "callbacks"));
  root.append(
    section(
      "Tensors",
      h("div", {}, partOrError(inspect, stateDictTotals), partOrError(detail.tensors, (t) => tensorsView(t, entry?.path ?? path))),
      "tensors",
    ),
  );
  root.append(section("Inspect (raw)", partOrError(inspect, (i) => h("details", {}, h("summary", {}, "JSON"), h("pre", {}, JSON.stringify(i, null, 2)))), "inspect"));
  root.append(writes);
}

/** The CLI prints a list of one result per file; the API may give the object itself. */
function first(v: unknown): unknown {
  return Array.isArray(v) && v.length === 1 ? v[0] : v;
}

function section(title: string, body: Node, id?: string): HTMLElement {
  return h("section", { class: "card", id: id ? `section-${id}` : null }, h("h3", {}, title), body);
}

function partOrError(v: unknown, view: (v: Record<string, unknown>) => Node): Node {
  if (v === null || v === undefined) return h("p", { class: "muted" }, "not available");
  if (typeof v !== "object") return h("pre", {}, String(v));
  const o = v as Record<string, unknown>;
  if (typeof o.error === "string" && Object.keys(o).length === 1) return errorBox("Failed:", o.error);
  try {
    return view(o);
  } catch (e) {
    return errorBox("Could not show this part:", String(e));
  }
}

/** The source of a field: the entry's `sources` by exact name, else by its nearest parent. */
function sourceOf(entry: Entry, field: string): string {
  const s = entry.sources ?? {};
  let f = field;
  for (;;) {
    if (s[f]) return s[f];
    const i = f.lastIndexOf(".");
    if (i < 0) return "";
    f = f.slice(0, i);
  }
}

function fieldsTable(entry: Entry): HTMLElement {
  const conflicts = new Map((entry.conflicts ?? []).map((c) => [c.field, c]));
  const rows: HTMLElement[] = [];
  const skip = new Set(["sources", "conflicts", "hparams"]);
  const flat: [string, unknown][] = [];
  for (const [k, v] of Object.entries(entry)) {
    if (skip.has(k)) continue;
    if (k === "metrics" && v && typeof v === "object") {
      for (const [m, mv] of Object.entries(v as Record<string, unknown>)) flat.push([`metrics.${m}`, mv]);
    } else if (v && typeof v === "object" && !Array.isArray(v)) {
      leaves(v, k, flat);
    } else {
      flat.push([k, v]);
    }
  }
  for (const [k, v] of flat) {
    const c = conflicts.get(k);
    let text = fmtValue(v);
    if (k === "size_bytes") text = `${fmtBytes(v as number)} (${fmtCount(v as number)} bytes)`;
    rows.push(
      h(
        "tr",
        { class: c ? "conflict" : "", "data-field": k },
        h("th", {}, k),
        h("td", { class: "value" }, text),
        h("td", { class: "source" }, sourceOf(entry, k)),
        h(
          "td",
          {},
          c
            ? h(
                "ul",
                { class: "conflicts" },
                c.values.map((cv) => h("li", { class: cv.chosen ? "chosen" : "" }, `${cv.source}: ${fmtValue(cv.value)}${cv.chosen ? " (chosen)" : ""}`)),
              )
            : "",
        ),
      ),
    );
  }
  // Conflicts on fields that are not leaves shown above (a model part's leaf).
  for (const c of entry.conflicts ?? []) {
    if (flat.some(([k]) => k === c.field)) continue;
    rows.push(
      h(
        "tr",
        { class: "conflict", "data-field": c.field },
        h("th", {}, c.field),
        h("td", {}, ""),
        h("td", {}, ""),
        h("td", {}, h("ul", { class: "conflicts" }, c.values.map((cv) => h("li", {}, `${cv.source}: ${fmtValue(cv.value)}${cv.chosen ? " (chosen)" : ""}`)))),
      ),
    );
  }
  return h(
    "table",
    { class: "fields", id: "fields-table" },
    h("thead", {}, h("tr", {}, h("th", {}, "field"), h("th", {}, "value"), h("th", {}, "source"), h("th", {}, "conflicts"))),
    h("tbody", {}, rows),
  );
}

/** Nested objects as an expandable tree (open two levels deep). */
export function tree(v: unknown, depth = 0): Node {
  if (v === null || typeof v !== "object") return h("span", { class: "leaf" }, fmtValue(v));
  if (Array.isArray(v) && v.every((x) => x === null || typeof x !== "object")) {
    return h("span", { class: "leaf" }, JSON.stringify(v));
  }
  const ul = h("ul", { class: "tree" });
  for (const [k, sub] of Object.entries(v as Record<string, unknown>)) {
    if (sub !== null && typeof sub === "object" && Object.keys(sub).length) {
      ul.append(h("li", {}, h("details", { open: depth < 2 }, h("summary", {}, k), tree(sub, depth + 1))));
    } else {
      ul.append(h("li", { "data-key": k }, h("span", { class: "key" }, k), ": ", tree(sub, depth + 1)));
    }
  }
  return ul;
}

/** `{"verdict", "files": [record…]}` (one record per file; a DCP folder has several). */
function securityView(scan: Record<string, unknown>): Node {
  const verdict = String(scan.verdict ?? "unknown");
  const out = h("div", {}, h("p", {}, "Verdict: ", h("span", { class: `badge sec-${verdict}`, id: "verdict" }, verdict)));
  const files = Array.isArray(scan.files) ? (scan.files as Record<string, unknown>[]) : [scan];
  for (const f of files) {
    if (files.length > 1) out.append(h("h4", {}, fmtValue(f.path), " ", h("span", { class: `badge sec-${String(f.verdict)}` }, fmtValue(f.verdict))));
    out.append(scanRecord(f));
  }
  return out;
}

function scanRecord(scan: Record<string, unknown>): Node {
  const out = h("div", {});
  if (typeof scan.error === "string") out.append(errorBox("Scan error:", scan.error));
  const globals = Array.isArray(scan.globals) ? (scan.globals as Record<string, unknown>[]) : [];
  const findings = Array.isArray(scan.findings) ? (scan.findings as Record<string, unknown>[]) : [];
  const items = [...findings, ...globals];
  if (items.length) {
    out.append(
      h(
        "table",
        { class: "grid" },
        h("thead", {}, h("tr", {}, h("th", {}, "name"), h("th", {}, "class"), h("th", {}, "usage"), h("th", {}, "reason"), h("th", {}, "where"))),
        h(
          "tbody",
          {},
          items.map((g) =>
            h(
              "tr",
              { class: g.class && g.class !== "safe" ? "unsafe" : "" },
              h("td", {}, fmtValue(g.name ?? g.global)),
              h("td", {}, fmtValue(g.class ?? g.severity)),
              h("td", {}, fmtValue(g.usage)),
              h("td", {}, fmtValue(g.reason ?? g.message)),
              h("td", { class: "muted" }, [g.entry, g.offset !== undefined ? `@${String(g.offset)}` : null].filter(Boolean).join(" ")),
            ),
          ),
        ),
      ),
    );
  }
  const problems = Array.isArray(scan.problems) ? (scan.problems as unknown[]) : [];
  if (problems.length) out.append(h("ul", { class: "problems" }, problems.map((p) => h("li", {}, fmtValue(p)))));
  if (scan.note) out.append(h("p", { class: "muted" }, fmtValue(scan.note)));
  return out;
}

function identityView(id: Record<string, unknown>): Node {
  const comps = (id.components ?? {}) as Record<string, unknown>;
  return h(
    "div",
    {},
    h("p", {}, "Experiment hash: ", h("code", { id: "identity-hash" }, fmtValue(id.hash)), id.algorithm ? h("span", { class: "muted" }, ` (${fmtValue(id.algorithm)})`) : null),
    h(
      "table",
      { class: "grid" },
      h("tbody", {}, Object.entries(comps).map(([k, v]) => h("tr", { "data-component": k }, h("th", {}, k), h("td", {}, h("code", {}, v === null ? "—" : fmtValue(v)))))),
    ),
    id.inputs ? h("details", {}, h("summary", {}, "inputs"), tree(id.inputs)) : null,
  );
}

function callbacksView(inspect: Record<string, unknown>): Node {
  const cbs = Array.isArray(inspect.callbacks) ? (inspect.callbacks as Record<string, unknown>[]) : [];
  if (!cbs.length) return h("p", { class: "muted" }, "No callback state in this checkpoint.");
  return h(
    "div",
    {},
    cbs.map((cb) =>
      h(
        "details",
        { open: true, class: "callback" },
        h("summary", {}, fmtValue(cb.kind ?? cb.key)),
        tree(Object.fromEntries(Object.entries(cb).filter(([k]) => k !== "kind"))),
      ),
    ),
  );
}

interface Tensor {
  name: string;
  shape: number[];
  dtype: string;
  [k: string]: unknown;
}

/** Every list of `{name, shape, dtype}` objects in inspect's output (a state dict's tensors). */
function findTensors(v: unknown, out: Tensor[] = [], depth = 0): Tensor[] {
  if (depth > 6 || v === null || typeof v !== "object") return out;
  if (Array.isArray(v)) {
    if (v.length && v.every((t) => t && typeof t === "object" && "name" in t && "shape" in t)) {
      out.push(...(v as Tensor[]));
      return out;
    }
    for (const x of v) findTensors(x, out, depth + 1);
    return out;
  }
  for (const x of Object.values(v)) findTensors(x, out, depth + 1);
  return out;
}

function numel(shape: unknown): number {
  return Array.isArray(shape) ? shape.reduce((a: number, b) => a * (Number(b) || 0), 1) : 0;
}

/** inspect's totals per state dict (tensors, parameters, bytes, per dtype). */
function stateDictTotals(inspect: Record<string, unknown>): Node {
  const out = h("div", {});
  const sds = Array.isArray(inspect.state_dicts) ? (inspect.state_dicts as Record<string, unknown>[]) : [];
  for (const sd of sds) {
    out.append(
      h(
        "p",
        {},
        h("code", {}, fmtValue(sd.path)),
        `: ${fmtCount(Number(sd.tensors))} tensors, ${fmtCount(Number(sd.elements))} parameters, ${fmtBytes(Number(sd.bytes))}`,
        Array.isArray(sd.by_dtype)
          ? ` (${(sd.by_dtype as Record<string, unknown>[]).map((d) => `${fmtValue(d.dtype)}: ${fmtCount(Number(d.tensors))}`).join(", ")})`
          : "",
      ),
    );
  }
  return out;
}

/** `/api/detail`'s tensors part (`{"state_dict", "tensors": [{name, dtype, shape}…]}`), grouped by module. */
function tensorsView(part: Record<string, unknown>, path: string): Node {
  const out = h("div", {});
  const tensors = findTensors(part.tensors ?? part);
  if (tensors.length) {
    // Grouped by module: the name less its last component (`encoder.layer1.weight` → `encoder.layer1`).
    const groups = new Map<string, Tensor[]>();
    for (const t of tensors) {
      const i = t.name.lastIndexOf(".");
      const m = i > 0 ? t.name.slice(0, i) : "(top level)";
      const g = groups.get(m);
      if (g) g.push(t);
      else groups.set(m, [t]);
    }
    const list = h("div", { class: "modules", id: "tensor-groups" });
    for (const [m, ts] of groups) {
      const params = ts.reduce((s, t) => s + numel(t.shape), 0);
      list.append(
        h(
          "details",
          { class: "module", "data-module": m, open: groups.size <= 12 },
          h("summary", {}, h("code", {}, m), h("span", { class: "muted" }, ` ${ts.length} tensors, ${fmtCount(params)} parameters`)),
          h(
            "table",
            { class: "grid tensors" },
            h("tbody", {}, ts.map((t) => tensorRow(t, path))),
          ),
        ),
      );
    }
    out.append(list);
  } else {
    out.append(h("p", { class: "muted" }, "No tensor in the state dict."));
  }
  if (typeof part.other_entries === "number" && part.other_entries > 0) {
    out.append(h("p", { class: "muted" }, `${fmtCount(part.other_entries)} other entries (not tensors) in the state dict.`));
  }
  return out;
}

function tensorRow(t: Tensor, path: string): HTMLElement {
  const values = h("td", { class: "values" });
  const btn = h("button", { type: "button", class: "small" }, "values");
  btn.addEventListener("click", async () => {
    btn.disabled = true;
    values.textContent = "…";
    try {
      const r = await api<{ values: unknown[]; truncated: boolean }>("/api/tensor", [
        ["path", path],
        ["name", t.name],
        ["max_bytes", "4096"],
      ]);
      values.textContent = r.values.slice(0, 64).map(fmtValue).join(", ") + (r.truncated || r.values.length > 64 ? ", …" : "");
    } catch (e) {
      clear(values);
      values.append(errorBox("", describe(e)));
    }
    btn.disabled = false;
  });
  return h(
    "tr",
    { "data-tensor": t.name },
    h("td", {}, h("code", {}, t.name)),
    h("td", {}, `[${Array.isArray(t.shape) ? t.shape.join(", ") : fmtValue(t.shape)}]`),
    h("td", {}, fmtValue(t.dtype)),
    h("td", { class: "num" }, fmtCount(numel(t.shape))),
    h("td", {}, btn),
    values,
  );
}

