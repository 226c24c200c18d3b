// The compare page (`#/compare?path=A&path=B…`): /api/compare's rows side by side, the ones
// that differ highlighted; tensors added/removed/reshaped and identity from `ckpt diff`. When
// /api/compare fails, the entries themselves are compared here (fields only) and the page says so.

import { api, describe, type CompareAnswer, type Entry } from "./api";
import { basename, checkpointHref, clear, copyButton, errorBox, fmtValue, h, leaves, shellQuote } from "./util";

export async function renderCompare(root: HTMLElement, params: URLSearchParams): Promise<void> {
  const paths = params.getAll("path");
  clear(root);
  if (paths.length < 2) {
    root.append(errorBox("Nothing to compare:", "select 2 to 16 checkpoints in the catalog."));
    return;
  }
  root.append(h("div", { class: "status" }, "loading…"));
  let answer: CompareAnswer;
  let fallback: string | null = null;
  try {
    answer = await api<CompareAnswer>("/api/compare", paths.map((p) => ["path", p]));
  } catch (e) {
    fallback = describe(e);
    try {
      const entries = await Promise.all(paths.map((p) => api<Entry>("/api/checkpoint", [["path", p]])));
      answer = compareEntries(entries);
    } catch (e2) {
      clear(root);
      root.append(errorBox("These checkpoints could not be compared:", `${fallback}; ${describe(e2)}`));
      return;
    }
  }
  clear(root);
  root.append(
    h("h2", {}, `Compare ${answer.paths.length} checkpoints`),
    copyButton(`ckpt compare ${answer.paths.map(shellQuote).join(" ")}`),
  );
  if (fallback) {
    root.append(errorBox("Compare endpoint unavailable:", `${fallback} — the catalog entries are compared here; tensors and identity are not shown.`));
  }

  const onlyDiff = h("input", { type: "checkbox", id: "only-differing" });
  const table = h("table", { class: "compare", id: "compare-table" });
  const draw = () => {
    clear(table);
    table.append(
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", {}, "field"),
          answer.paths.map((p, i) => h("th", { title: p }, h("a", { href: checkpointHref(p) }, answer.labels?.[i] ?? basename(p)), h("div", { class: "muted small" }, p))),
        ),
      ),
    );
    const body = h("tbody", {});
    // Grouped by section (`ckpt compare`'s: checkpoint, metrics, model, hparams, identity),
    // metrics and hyperparameters first; without sections, by the field's first part.
    const sectionOf = (r: CompareAnswer["fields"][number]) => r.section ?? (r.field.includes(".") ? r.field.slice(0, r.field.indexOf(".")) : "checkpoint");
    const order = ["metrics", "hparams", "model", "data", "identity", "checkpoint"];
    const rank = (s: string) => (order.indexOf(s) < 0 ? order.length : order.indexOf(s));
    const rows = answer.fields.map((r, i) => ({ r, i, s: sectionOf(r) })).sort((a, b) => rank(a.s) - rank(b.s) || a.i - b.i);
    const titles: Record<string, string> = { metrics: "metrics", hparams: "hyperparameters", model: "model", data: "data", identity: "identity", checkpoint: "checkpoint" };
    let last = "";
    for (const { r, s } of rows) {
      if (onlyDiff.checked && !r.differs) continue;
      if (s !== last) {
        last = s;
        body.append(h("tr", { class: "group" }, h("td", { colspan: answer.paths.length + 1 }, titles[s] ?? s)));
      }
      body.append(
        h(
          "tr",
          { class: r.differs ? "differs" : "same", "data-field": r.field, "data-differs": r.differs ? "true" : "false" },
          h("th", {}, r.field),
          r.values.map((v) => h("td", { class: typeof v === "number" ? "num" : "" }, v === null || v === undefined ? "—" : fmtValue(v))),
        ),
      );
    }
    table.append(body);
  };
  onlyDiff.addEventListener("change", draw);
  draw();
  root.append(h("label", { class: "toggle" }, onlyDiff, " only fields that differ"), h("div", { class: "table-wrap" }, table));

  if (answer.tensors) root.append(tensorsSection(answer.tensors, answer.paths.length > 2));
  if (answer.identity !== undefined) root.append(identitySection(answer.identity));
}

/** Fields compared from the entries alone (every leaf, as `ckpt compare --all` lists them). */
function compareEntries(entries: Entry[]): CompareAnswer {
  const maps = entries.map((e) => {
    const m = new Map<string, unknown>();
    for (const [k, v] of Object.entries(e)) {
      if (k === "sources" || k === "conflicts" || k === "path") continue;
      if (k === "metrics" && v && typeof v === "object") {
        for (const [mk, mv] of Object.entries(v)) m.set(`metrics.${mk}`, mv);
      } else if (v && typeof v === "object" && !Array.isArray(v)) {
        for (const [lk, lv] of leaves(v, k)) m.set(lk, lv);
      } else {
        m.set(k, v);
      }
    }
    return m;
  });
  const names: string[] = [];
  const seen = new Set<string>();
  for (const m of maps) for (const k of m.keys()) if (!seen.has(k)) (seen.add(k), names.push(k));
  return {
    paths: entries.map((e) => e.path),
    fields: names.map((field) => {
      const values = maps.map((m) => (m.has(field) ? (m.get(field) ?? null) : null));
      const first = JSON.stringify(values[0]);
      return { field, values, differs: values.some((v) => JSON.stringify(v) !== first) };
    }),
  };
}

function tensorsSection(t: NonNullable<CompareAnswer["tensors"]>, withPath: boolean): HTMLElement {
  const list = (title: string, id: string, items: unknown[] | undefined) =>
    h(
      "div",
      { class: `tensor-diff ${id}`, id: `tensors-${id}` },
      h("h4", {}, `${title} (${items?.length ?? 0})`),
      items && items.length
        ? h("ul", {}, items.slice(0, 500).map((x) => h("li", { "data-tensor": tensorName(x) }, h("code", {}, describeTensor(x)), withPath ? h("span", { class: "muted small" }, ` (${tensorPath(x)})`) : null)))
        : h("p", { class: "muted" }, "none"),
      items && items.length > 500 ? h("p", { class: "muted" }, `… ${items.length - 500} more`) : null,
    );
  return h(
    "section",
    { class: "card", id: "section-tensors" },
    h("h3", {}, "Tensors (first checkpoint against the others)"),
    h(
      "div",
      { class: "cols3" },
      list("added", "added", t.added),
      list("removed", "removed", t.removed),
      list("reshaped", "reshaped", t.reshaped),
      t.retyped !== undefined ? list("retyped", "retyped", t.retyped) : null,
    ),
  );
}

function tensorName(x: unknown): string {
  return x && typeof x === "object" && !Array.isArray(x) ? fmtValue((x as Record<string, unknown>).name) : Array.isArray(x) ? String(x[0]) : String(x);
}

function tensorPath(x: unknown): string {
  return x && typeof x === "object" && "path" in x ? basename(String((x as Record<string, unknown>).path)) : "";
}

function describeTensor(x: unknown): string {
  if (typeof x === "string") return x;
  if (Array.isArray(x)) return x.map((p) => (typeof p === "string" ? p : JSON.stringify(p))).join(" ");
  if (x && typeof x === "object") {
    const o = x as Record<string, unknown>;
    const name = fmtValue(o.name ?? o.key ?? "");
    if ("from" in o || "to" in o) return `${name}: ${fmtShape(o.from)} → ${fmtShape(o.to)}`;
    if ("shape" in o) return `${name} ${fmtShape(o.shape)} ${fmtValue(o.dtype ?? "")}`;
    return JSON.stringify(o);
  }
  return String(x);
}

function fmtShape(v: unknown): string {
  return Array.isArray(v) ? `[${v.join(", ")}]` : fmtValue(v);
}

/** Every `{hash, components}` object in `ckpt diff`'s identity answer, with the path beside it. */
function findIdentities(v: unknown, path: string | null, out: { path: string | null; hash: unknown; components: Record<string, unknown> }[], depth = 0): void {
  if (depth > 6 || v === null || typeof v !== "object") return;
  const o = v as Record<string, unknown>;
  const here = typeof o.path === "string" ? o.path : path;
  if (typeof o.error === "string" && here !== null) {
    out.push({ path: here, hash: `error: ${o.error}`, components: {} });
    return;
  }
  if (o.components && typeof o.components === "object" && !Array.isArray(o.components)) {
    out.push({ path: here, hash: o.hash, components: o.components as Record<string, unknown> });
    return;
  }
  for (const [k, x] of Object.entries(o)) if (k !== "diff") findIdentities(x, here, out, depth + 1);
}

/** `ckpt diff`'s identity: each checkpoint's components side by side, those that differ highlighted. */
function identitySection(identity: unknown): HTMLElement {
  const sec = h("section", { class: "card", id: "section-identity" }, h("h3", {}, "Identity"));
  if (identity && typeof identity === "object" && "error" in identity && Object.keys(identity).length === 1) {
    sec.append(errorBox("Identity unavailable:", String((identity as { error: unknown }).error)));
    return sec;
  }
  const ids: { path: string | null; hash: unknown; components: Record<string, unknown> }[] = [];
  findIdentities(identity, null, ids);
  // The same path may appear in several pairwise diffs: keep the first of each.
  const unique = ids.filter((x, i) => x.path === null || ids.findIndex((y) => y.path === x.path) === i);
  if (unique.length >= 2) {
    const names = [...new Set(unique.flatMap((x) => Object.keys(x.components)))];
    const row = (name: string, vals: unknown[]) => {
      const differs = vals.some((v) => JSON.stringify(v) !== JSON.stringify(vals[0]));
      return h(
        "tr",
        { class: differs ? "differs" : "same", "data-component": name, "data-differs": differs ? "true" : "false" },
        h("th", {}, name),
        vals.map((v) => h("td", {}, h("code", { title: v === null ? "" : fmtValue(v) }, v === null || v === undefined ? "—" : fmtValue(v).slice(0, 16)))),
      );
    };
    sec.append(
      h(
        "table",
        { class: "grid", id: "identity-table" },
        h("thead", {}, h("tr", {}, h("th", {}, ""), unique.map((x) => h("th", { title: x.path ?? "" }, x.path ? basename(x.path) : "")))),
        h(
          "tbody",
          {},
          row("hash", unique.map((x) => x.hash)),
          names.map((n) => row(n, unique.map((x) => x.components[n] ?? null))),
        ),
      ),
    );
  }
  sec.append(h("details", {}, h("summary", {}, "JSON"), h("pre", {}, JSON.stringify(identity, null, 2))));
  return sec;
}
