// The catalog page (`#/`): one server page of entries at a time (≤ PAGE rows, so 10,000
// entries cost the same as 100), grouped by experiment → run where consecutive rows share
// them, with the sort, filters, search and columns kept in the URL's fragment.

import { api, ApiError, describe, type Entry, type Field, type Page } from "./api";
import {
  append,
  basename,
  checkpointHref,
  clear,
  errorBox,
  fmtBytes,
  fmtCount,
  fmtValue,
  getPath,
  h,
  routeHref,
} from "./util";

/** Rows per server page: enough to scroll, few enough to render in a frame or two. */
const PAGE = 200;

interface State {
  q: string;
  filter: string;
  sort: string;
  desc: boolean;
  offset: number;
  cols: string[] | null;
}

/** Experiments and runs folded away by their header's toggle (kept while the page is left). */
const collapsed = new Set<string>();

function groupKey(e: Entry): { exp: string; run: string } {
  return { exp: `e\u0000${e.experiment ?? ""}`, run: `r\u0000${e.experiment ?? ""}\u0000${e.run ?? ""}` };
}

/** Paths ticked for compare/curves, kept while the page is left and come back to. */
const selected = new Set<string>();
/** Runs ticked as a whole (run group key → the checkpoint standing for it in `selected`). */
const selectedRuns = new Map<string, string>();

/**
 * The checkpoint that stands for a run when runs are compared: its best (the monitor's, as
 * the catalog marks it), else its last, else the one at the highest step. All of the run's
 * entries are asked for, not just those on the page shown.
 */
async function runRepresentative(e: Entry): Promise<string | null> {
  const filters: [string, string][] = [["filter", `experiment=${e.experiment ?? ""}`]];
  if (e.run) filters.push(["filter", `run=${e.run}`]);
  const page = await api<Page>("/api/checkpoints", [...filters, ["sort", "global_step"], ["desc", "1"], ["limit", "1000"]]);
  const all = page.checkpoints.filter((x) => x.experiment === e.experiment && x.run === e.run);
  const pick = all.find((x) => x.is_best) ?? all.find((x) => x.is_last) ?? all[0];
  return pick ? pick.path : null;
}
let fieldsCache: Field[] | null = null;
let fieldsError: string | null = null;

/** The page currently shown, for live updates. */
let view: CatalogView | null = null;

export function renderCatalog(root: HTMLElement, params: URLSearchParams): void {
  const st: State = {
    q: params.get("q") ?? "",
    filter: params.getAll("filter").join("; "),
    sort: params.get("sort") ?? "",
    desc: params.get("desc") === "1",
    offset: Math.max(0, Number(params.get("offset") ?? 0) || 0),
    cols: params.get("cols") ? (params.get("cols") ?? "").split(",").filter(Boolean) : null,
  };
  view = new CatalogView(root, st);
  void view.load();
}

export function leaveCatalog(): void {
  view = null;
}

/** A live event for the catalog page (see live.ts). */
export function catalogEvent(kind: string, data: { entry?: Entry; path?: string; generation?: number }): void {
  view?.onEvent(kind, data);
}

/** The filter box holds several filters separated by `;` (each one the CLI's `--filter`). */
export function splitFilters(s: string): string[] {
  return s
    .split(";")
    .map((f) => f.trim())
    .filter((f) => f !== "");
}

function storedColumns(): string[] | null {
  try {
    const s = localStorage.getItem("ckpt.columns");
    return s ? (JSON.parse(s) as string[]) : null;
  } catch {
    return null;
  }
}

class CatalogView {
  private table = h("table", { class: "catalog", id: "catalog-table" });
  private status = h("div", { class: "status", id: "catalog-status" });
  private filterError = h("div", { class: "filter-error", id: "filter-error", role: "alert", hidden: true });
  private totals = h("span", { class: "totals", id: "totals" });
  private pager = h("div", { class: "pager" });
  private colPicker = h("details", { class: "columns", id: "column-picker" });
  private actions = h("span", { class: "actions" });
  private entries: Entry[] = [];
  private total = 0;
  private sizeBytes: number | undefined;
  private seq = 0;
  private fresh = new Set<string>();
  private reloadTimer: number | undefined;

  constructor(
    private root: HTMLElement,
    private st: State,
  ) {
    const search = h("input", {
      type: "search",
      id: "search",
      placeholder: "search path, experiment, run, task, architecture",
      value: st.q,
      "aria-label": "Free-text search",
    });
    let timer: number | undefined;
    search.addEventListener("input", () => {
      window.clearTimeout(timer);
      timer = window.setTimeout(() => {
        this.st.q = search.value.trim();
        this.st.offset = 0;
        void this.load();
      }, 250);
    });
    const filter = h("input", {
      type: "text",
      id: "filter",
      placeholder: "filter: hmean>0.75; architecture=dbnet   (Enter)",
      value: st.filter,
      "aria-label": "Filters, the CLI's --filter language, separated by ;",
      spellcheck: "false",
    });
    filter.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") {
        this.st.filter = filter.value;
        this.st.offset = 0;
        void this.load();
      }
    });
    clear(root);
    root.append(
      h(
        "div",
        { class: "toolbar" },
        search,
        h("div", { class: "filter-box" }, filter, this.filterError),
        this.colPicker,
      ),
      h("div", { class: "summary" }, this.totals, this.actions),
      this.status,
      h("div", { class: "table-wrap" }, this.table),
      this.pager,
    );
    void this.loadFields();
  }

  private columns(): string[] {
    const chosen = this.st.cols ?? storedColumns();
    if (chosen && chosen.length) return chosen;
    // Defaults: the most common metrics, then the usual identity of a checkpoint.
    let metrics: string[];
    if (fieldsCache) {
      metrics = fieldsCache
        .filter((f) => f.name.startsWith("metrics.") && (f.kind === "number" || f.kind === "mixed"))
        .sort((a, b) => b.count - a.count)
        .slice(0, 3)
        .map((f) => f.name);
    } else {
      const seen = new Set<string>();
      for (const e of this.entries) for (const k of Object.keys(e.metrics ?? {})) seen.add(`metrics.${k}`);
      metrics = [...seen].slice(0, 3);
    }
    return ["epoch", "global_step", ...metrics, "model.architecture", "params", "size_bytes", "modified"];
  }

  private syncUrl(): void {
    const p: [string, string][] = [];
    if (this.st.q) p.push(["q", this.st.q]);
    for (const f of splitFilters(this.st.filter)) p.push(["filter", f]);
    if (this.st.sort) p.push(["sort", this.st.sort]);
    if (this.st.desc) p.push(["desc", "1"]);
    if (this.st.offset) p.push(["offset", String(this.st.offset)]);
    if (this.st.cols) p.push(["cols", this.st.cols.join(",")]);
    history.replaceState(null, "", routeHref("/", p));
  }

  async loadFields(): Promise<void> {
    if (!fieldsCache) {
      try {
        const r = await api<{ fields: Field[] }>("/api/fields");
        fieldsCache = r.fields;
        fieldsError = null;
      } catch (e) {
        fieldsError = describe(e);
      }
    }
    this.renderColumnPicker();
    if (fieldsCache && !this.st.cols && !storedColumns()) this.renderTable();
  }

  private renderColumnPicker(): void {
    clear(this.colPicker);
    this.colPicker.append(h("summary", {}, "columns"));
    const cols = new Set(this.columns());
    const box = h("div", { class: "picker" });
    const names: { name: string; kind: string; count: number }[] = fieldsCache
      ? fieldsCache
      : this.columns().map((name) => ({ name, kind: "", count: 0 }));
    if (fieldsError) box.append(errorBox("Field list unavailable:", fieldsError));
    const filterIn = h("input", { type: "search", placeholder: "find a field", class: "picker-find" });
    const list = h("div", { class: "picker-list" });
    const draw = () => {
      clear(list);
      const needle = filterIn.value.toLowerCase();
      for (const f of names) {
        if (needle && !f.name.toLowerCase().includes(needle)) continue;
        const cb = h("input", { type: "checkbox", "data-field": f.name, checked: cols.has(f.name) });
        cb.addEventListener("change", () => {
          const now = this.columns().filter((c) => c !== f.name);
          if (cb.checked) now.push(f.name);
          this.st.cols = now;
          try {
            localStorage.setItem("ckpt.columns", JSON.stringify(now));
          } catch {
            // private mode: the URL still holds them
          }
          this.syncUrl();
          this.renderTable();
        });
        list.append(
          h("label", {}, cb, " ", f.name, f.kind ? h("span", { class: "muted" }, ` ${f.kind}, ${fmtCount(f.count)}`) : null),
        );
      }
    };
    filterIn.addEventListener("input", draw);
    draw();
    box.append(
      filterIn,
      h(
        "button",
        {
          type: "button",
          onclick: () => {
            this.st.cols = null;
            try {
              localStorage.removeItem("ckpt.columns");
            } catch {
              // nothing stored
            }
            this.syncUrl();
            this.renderColumnPicker();
            this.renderTable();
          },
        },
        "default columns",
      ),
      list,
    );
    this.colPicker.append(box);
  }

  async load(): Promise<void> {
    const seq = ++this.seq;
    this.syncUrl();
    const params: [string, string][] = [
      ["offset", String(this.st.offset)],
      ["limit", String(PAGE)],
    ];
    for (const f of splitFilters(this.st.filter)) params.push(["filter", f]);
    if (this.st.sort) params.push(["sort", this.st.sort]);
    if (this.st.desc) params.push(["desc", "1"]);
    if (this.st.q) params.push(["q", this.st.q]);
    this.status.textContent = "loading…";
    this.status.className = "status";
    try {
      const page = await api<Page>("/api/checkpoints", params);
      if (seq !== this.seq) return;
      this.filterError.hidden = true;
      this.filterError.textContent = "";
      this.entries = page.checkpoints;
      this.total = page.total;
      this.sizeBytes = page.size_bytes;
      this.status.textContent = "";
      this.renderTable();
      // The first meaningful paint's time, for the 10,000-entry test (performance entries).
      if (this.entries.length && !performance.getEntriesByName("ckpt:catalog-rows").length) {
        performance.mark("ckpt:catalog-rows");
      }
    } catch (e) {
      if (seq !== this.seq) return;
      if (e instanceof ApiError && e.status === 400) {
        // The CLI's own message: a bad filter, an unknown field, a parameter the server lacks.
        this.filterError.hidden = false;
        this.filterError.textContent = e.message;
        this.status.textContent = "";
      } else {
        clear(this.status);
        this.status.append(errorBox("The catalog could not be loaded:", describe(e)));
      }
      this.entries = [];
      this.total = 0;
      this.sizeBytes = undefined;
      this.renderTable();
    }
  }

  private sortBy(field: string): void {
    if (this.st.sort === field) {
      this.st.desc = !this.st.desc;
    } else {
      this.st.sort = field;
      // Metrics read best first the way people look at them: numbers descending would hide
      // a loss; keep ascending as the first click, a second click flips.
      this.st.desc = false;
    }
    this.st.offset = 0;
    void this.load();
  }

  private renderActions(): void {
    clear(this.actions);
    const n = selected.size;
    const paths = [...selected];
    append(this.actions, [
      h("span", { class: "muted", id: "selected-count" }, `${n} selected`),
      h(
        "a",
        {
          class: n >= 2 ? "button" : "button disabled",
          id: "compare-selected",
          href: n >= 2 ? routeHref("/compare", paths.slice(0, 16).map((p) => ["path", p])) : null,
          title: "Select 2 to 16 checkpoints to compare",
        },
        "compare",
      ),
      h(
        "a",
        {
          class: n >= 1 ? "button" : "button disabled",
          id: "curves-selected",
          href: n >= 1 ? routeHref("/curves", paths.slice(0, 32).map((p) => ["path", p])) : null,
          title: "The curves of the selected checkpoints' runs",
        },
        "curves",
      ),
      n
        ? h(
            "button",
            {
              type: "button",
              onclick: () => {
                selected.clear();
                selectedRuns.clear();
                this.renderTable();
              },
            },
            "clear",
          )
        : null,
    ]);
  }

  private renderTable(): void {
    const cols = this.columns();
    const shownSize = this.sizeBytes ?? this.entries.reduce((s, e) => s + (e.size_bytes ?? 0), 0);
    clear(this.totals);
    this.totals.append(
      h("strong", { id: "total", "data-total": this.total }, fmtCount(this.total)),
      this.total === 1 ? " checkpoint" : " checkpoints",
      " · ",
      h("span", { id: "total-size" }, fmtBytes(shownSize)),
      this.sizeBytes === undefined && this.total > this.entries.length ? " on this page" : "",
    );
    this.renderActions();

    clear(this.table);
    const head = h("tr", {});
    head.append(h("th", { class: "sel" }), this.header("name", "path"), h("th", {}, ""));
    for (const c of cols) head.append(this.header(c, c));
    this.table.append(h("thead", {}, head));
    const body = h("tbody", {});
    // Experiment → run → checkpoint: a header row where the experiment changes, a second one
    // where the run changes within it (when the run is named apart from the experiment).
    const span = cols.length + 3;
    let exp: string | null | undefined;
    let run: string | null | undefined;
    for (const e of this.entries) {
      if (exp === undefined || e.experiment !== exp) {
        exp = e.experiment;
        run = undefined;
        body.append(this.groupRow(e, span, "experiment"));
      }
      if (e.run !== run) {
        run = e.run;
        if (run && run !== exp) body.append(this.groupRow(e, span, "run"));
      }
      const key = groupKey(e);
      if (!collapsed.has(key.exp) && !collapsed.has(key.run)) body.append(this.row(e, cols));
    }
    if (!this.entries.length && !this.status.textContent) {
      body.append(h("tr", {}, h("td", { colspan: cols.length + 3, class: "empty" }, "No checkpoint matches.")));
    }
    this.table.append(body);
    this.renderPager();
  }

  private header(label: string, field: string): HTMLElement {
    const active = this.st.sort === field;
    const arrow = active ? (this.st.desc ? " ▼" : " ▲") : "";
    return h(
      "th",
      {
        class: active ? "sortable sorted" : "sortable",
        "data-sort": field,
        "aria-sort": active ? (this.st.desc ? "descending" : "ascending") : null,
        title: `Sort by ${field}`,
        onclick: () => this.sortBy(field),
      },
      label.replace(/^metrics\./, ""),
      arrow,
    );
  }

  private groupRow(e: Entry, span: number, level: "experiment" | "run"): HTMLElement {
    const key = groupKey(e)[level === "experiment" ? "exp" : "run"];
    const name = (level === "experiment" ? e.experiment : e.run) ?? "(no experiment)";
    const n = this.entries.filter((x) => (level === "experiment" ? x.experiment === e.experiment : groupKey(x).run === key)).length;
    const isOpen = !collapsed.has(key);
    const toggle = h(
      "button",
      { type: "button", class: "twisty", "aria-expanded": isOpen ? "true" : "false", title: isOpen ? "collapse" : "expand" },
      isOpen ? "▾" : "▸",
    );
    toggle.addEventListener("click", () => {
      if (collapsed.has(key)) collapsed.delete(key);
      else collapsed.add(key);
      this.renderTable();
    });
    // A run's curves: the experiment row carries them when the run is the experiment.
    const showCurves = level === "run" || !e.run || e.run === e.experiment;
    // A run is ticked as a whole for compare: its best checkpoint (else last) stands for it.
    let runBox: HTMLElement | null = null;
    if (showCurves && e.experiment) {
      const runKey = groupKey(e).run;
      const cb = h("input", {
        type: "checkbox",
        class: "select-run",
        title: "Compare this run (its best checkpoint, else its last)",
        "aria-label": `select run ${name}`,
        checked: selectedRuns.has(runKey),
      });
      cb.addEventListener("change", async () => {
        if (!cb.checked) {
          const p = selectedRuns.get(runKey);
          selectedRuns.delete(runKey);
          if (p) selected.delete(p);
          this.renderTable();
          return;
        }
        try {
          const p = await runRepresentative(e);
          if (p) {
            selectedRuns.set(runKey, p);
            selected.add(p);
          } else {
            cb.checked = false;
          }
        } catch (err) {
          cb.checked = false;
          clear(this.status);
          this.status.append(errorBox("This run could not be selected:", describe(err)));
        }
        this.renderTable();
      });
      runBox = cb;
    }
    return h(
      "tr",
      { class: `group ${level}`, "data-experiment": e.experiment ?? "", "data-run": level === "run" ? (e.run ?? "") : null },
      h(
        "td",
        { colspan: span },
        toggle,
        " ",
        runBox,
        runBox ? " " : null,
        h("span", { class: "group-name" }, name),
        h("span", { class: "muted small" }, ` ${n} checkpoint${n === 1 ? "" : "s"}`),
        showCurves ? [" ", h("a", { href: routeHref("/curves", [["path", e.path]]), class: "small" }, "curves")] : null,
      ),
    );
  }

  private row(e: Entry, cols: string[]): HTMLElement {
    const cb = h("input", { type: "checkbox", class: "select", "aria-label": `select ${e.path}`, checked: selected.has(e.path) });
    cb.addEventListener("change", () => {
      if (cb.checked) selected.add(e.path);
      else selected.delete(e.path);
      this.renderActions();
    });
    const tr = h(
      "tr",
      { class: this.fresh.has(e.path) ? "entry fresh" : "entry", "data-path": e.path },
      h("td", { class: "sel" }, cb),
      h("td", { class: "name", title: e.path }, h("a", { href: checkpointHref(e.path) }, basename(e.path))),
      h("td", { class: "badges" }, badges(e)),
    );
    for (const c of cols) {
      const v = getPath(e, c);
      let text: string;
      if (c === "size_bytes") text = fmtBytes(v as number);
      else if (c === "params") text = fmtCount(v as number);
      else if (c === "modified" && typeof v === "string") text = v.replace("T", " ").slice(0, 16);
      else text = fmtValue(v);
      tr.append(h("td", { class: typeof v === "number" ? "num" : "", "data-field": c }, text));
    }
    return tr;
  }

  private renderPager(): void {
    clear(this.pager);
    if (this.total <= PAGE && this.st.offset === 0) return;
    const first = Math.min(this.st.offset + 1, this.total);
    const last = Math.min(this.st.offset + PAGE, this.total);
    const go = (off: number) => () => {
      this.st.offset = Math.max(0, off);
      void this.load();
      this.root.scrollIntoView();
    };
    this.pager.append(
      h("button", { type: "button", disabled: this.st.offset === 0, onclick: go(this.st.offset - PAGE) }, "‹ previous"),
      h("span", { id: "page-range" }, ` ${fmtCount(first)}–${fmtCount(last)} of ${fmtCount(this.total)} `),
      h("button", { type: "button", disabled: last >= this.total, onclick: go(this.st.offset + PAGE) }, "next ›"),
    );
  }

  /** A live change: a row is updated or removed in place; an addition reloads the page (the
   * sort and filters decide where, or whether, it shows) and is highlighted. */
  onEvent(kind: string, data: { entry?: Entry; path?: string }): void {
    if (kind === "changed" && data.entry) {
      const i = this.entries.findIndex((e) => e.path === data.entry?.path);
      if (i >= 0) {
        this.entries[i] = data.entry;
        this.fresh.add(data.entry.path);
        this.renderTable();
        return;
      }
      this.scheduleReload();
    } else if (kind === "removed" && data.path) {
      const i = this.entries.findIndex((e) => e.path === data.path);
      selected.delete(data.path);
      if (i >= 0) {
        this.entries.splice(i, 1);
        this.total = Math.max(0, this.total - 1);
        this.sizeBytes = undefined;
        this.renderTable();
      }
      this.scheduleReload();
    } else if (kind === "added" && data.entry) {
      this.fresh.add(data.entry.path);
      this.scheduleReload();
    } else if (kind === "resync") {
      this.scheduleReload();
    }
  }

  private scheduleReload(): void {
    window.clearTimeout(this.reloadTimer);
    this.reloadTimer = window.setTimeout(() => void this.load(), 200);
  }
}

export function badges(e: Entry): HTMLElement[] {
  const out: HTMLElement[] = [];
  if (e.is_best) out.push(h("span", { class: "badge best", title: `best by ${e.monitor ?? "the monitored metric"}` }, "best"));
  if (e.is_last) out.push(h("span", { class: "badge last", title: "the run's last checkpoint" }, "last"));
  if (e.security) {
    out.push(h("span", { class: `badge sec-${e.security}`, title: `security: ${e.security}` }, e.security));
  }
  if (e.error) out.push(h("span", { class: "badge err", title: e.error }, "error"));
  return out;
}
