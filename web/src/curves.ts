// The curves page (`#/curves?path=…`): for each metric the runs logged, one uPlot chart with a
// line per run (runs overlaid), and each checkpoint of the run marked on its line at the step it
// was saved — the best and the last highlighted. A mark is a link: hovering shows the checkpoint,
// clicking opens it.

import uPlot from "uplot";
import { api, describe, type CurveRun } from "./api";
import { append, basename, checkpointHref, clear, errorBox, fmtValue, h } from "./util";

const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f", "#7c3aed", "#b45309"];

/** Charts of the page shown, destroyed when it is left (uPlot keeps resize listeners). */
let charts: uPlot[] = [];

export function leaveCurves(): void {
  for (const c of charts) c.destroy();
  charts = [];
}

export async function renderCurves(root: HTMLElement, params: URLSearchParams): Promise<void> {
  const paths = params.getAll("path");
  leaveCurves();
  clear(root);
  if (!paths.length) {
    root.append(errorBox("No run:", "select checkpoints in the catalog, then “curves”."));
    return;
  }
  root.append(h("div", { class: "status" }, "loading…"));
  let runs: CurveRun[];
  try {
    runs = (await api<{ runs: CurveRun[] }>("/api/curves", paths.slice(0, 32).map((p) => ["path", p]))).runs;
  } catch (e) {
    clear(root);
    root.append(errorBox("The curves could not be loaded:", describe(e)));
    return;
  }
  clear(root);
  root.append(h("h2", {}, `Curves of ${runs.length} run${runs.length === 1 ? "" : "s"}`));
  const legend = h("ul", { class: "runs" });
  runs.forEach((r, i) => {
    legend.append(
      h(
        "li",
        {},
        h("span", { class: "swatch", style: `background:${COLORS[i % COLORS.length]}` }),
        runName(r),
        h("span", { class: "muted" }, ` — ${r.sources.map((s) => `${s.kind}: ${s.path}`).join(", ") || "no metric log found"}`),
      ),
    );
  });
  root.append(legend);
  const warnings = runs.flatMap((r) => r.warnings ?? []);
  if (warnings.length) {
    root.append(h("details", { class: "warnings" }, h("summary", {}, `${warnings.length} warning${warnings.length === 1 ? "" : "s"}`), h("ul", {}, warnings.map((w) => h("li", {}, w)))));
  }
  // One chart per metric and x kind (a JSON report counts epochs, a CSV steps: never on one axis).
  const key = (m: string, x: string) => `${m}\u0000${x}`;
  let charts = [...new Map(runs.flatMap((r) => r.series.map((s) => [key(s.metric, s.x ?? "step"), { metric: s.metric, x: s.x ?? "step" }] as const))).values()].sort(
    (a, b) => a.metric.localeCompare(b.metric) || a.x.localeCompare(b.x),
  );
  // Lightning logs the epoch as a column of metrics.csv: a staircase, not a metric.
  if (charts.some((c) => c.metric !== "epoch" && c.metric !== "step")) charts = charts.filter((c) => c.metric !== "epoch" && c.metric !== "step");
  if (!charts.length) {
    root.append(h("p", { class: "muted", id: "no-curves" }, "These runs logged no metric that ckpt can read."));
    return;
  }
  const popup = h("div", { class: "mark-popup", hidden: true });
  const grid = h("div", { class: "charts" });
  root.append(grid, popup);
  for (const c of charts) grid.append(chart(c.metric, c.x, runs, popup));
}

function runName(r: CurveRun): string {
  return [r.experiment, r.run && r.run !== r.experiment ? r.run : null].filter(Boolean).join(" / ") || "(run)";
}

/**
 * Where a checkpoint saved at `step` sits on a series: the point at that step, else the line
 * between the points around it (the line uPlot draws), else the nearest end.
 */
function valueAt(points: [number, number][], step: number): number | null {
  if (!points.length) return null;
  if (step <= points[0][0]) return points[0][1];
  for (let i = 1; i < points.length; i++) {
    const [x1, y1] = points[i];
    if (step <= x1) {
      const [x0, y0] = points[i - 1];
      return x1 === x0 ? y1 : y0 + ((y1 - y0) * (step - x0)) / (x1 - x0);
    }
  }
  return points[points.length - 1][1];
}

/** Where a checkpoint goes on an x axis of this kind: its step, its epoch, or nowhere (rows). */
function xOf(c: CurveRun["checkpoints"][number], x: string): number | null {
  const v = x === "step" ? c.step : x === "epoch" ? c.epoch : null;
  return typeof v === "number" ? v : null;
}

function chart(metric: string, x: string, runs: CurveRun[], popup: HTMLElement): HTMLElement {
  const box = h(
    "div",
    { class: "chart", "data-metric": metric, "data-x": x },
    h("h3", {}, metric, x !== "step" ? h("span", { class: "muted small" }, ` by ${x}`) : null),
  );
  // uPlot wants every series on one x array: the union of the runs' x values, gaps as null.
  const withSeries = runs
    .map((r, i) => ({ r, i, s: r.series.find((s) => s.metric === metric && (s.x ?? "step") === x) }))
    .filter((x): x is { r: CurveRun; i: number; s: CurveRun["series"][number] } => x.s !== undefined);
  const xs = [...new Set(withSeries.flatMap((x) => x.s.points.map((p) => p[0])))].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const ys = withSeries.map((x) => {
    const col: (number | null)[] = new Array<number | null>(xs.length).fill(null);
    for (const [st, v] of x.s.points) {
      const i = index.get(st);
      if (i !== undefined) col[i] = Number.isFinite(v) ? v : null;
    }
    return col;
  });
  const marks = h("div", { class: "marks" });
  const opts: uPlot.Options = {
    width: 600,
    height: 260,
    scales: {
      x: {
        time: false,
        // The steps of the checkpoints too: a run saved after its last logged point still
        // shows its mark inside the chart.
        range: (_u: uPlot, min: number, max: number): uPlot.Range.MinMax => {
          const steps = withSeries.flatMap((w) => w.r.checkpoints.map((c) => xOf(c, x))).filter((v): v is number => v !== null);
          const lo = Math.min(min, ...steps);
          const hi = Math.max(max, ...steps);
          return lo === hi ? [lo - 1, hi + 1] : [lo, hi];
        },
      },
    },
    axes: [{ label: x }, {}],
    legend: { show: true },
    series: [
      { label: x },
      ...withSeries.map((x) => ({
        label: runName(x.r),
        stroke: COLORS[x.i % COLORS.length],
        width: 1.5,
        spanGaps: true,
        points: { show: x.s.points.length < 60 },
      })),
    ],
    hooks: {
      draw: [(u: uPlot) => placeMarks(u, withSeries, marks, popup, metric, x)],
    },
  };
  const target = h("div", { class: "plot" });
  box.append(target);
  // Sized after the element is in the page (its width is the column's).
  requestAnimationFrame(() => {
    const width = Math.max(320, Math.floor(target.clientWidth || 600));
    opts.width = width;
    const u = new uPlot(opts, [xs, ...ys], target);
    u.over.appendChild(marks);
    placeMarks(u, withSeries, marks, popup, metric, x);
    charts.push(u);
  });
  return box;
}

function placeMarks(
  u: uPlot,
  withSeries: { r: CurveRun; i: number; s: CurveRun["series"][number] }[],
  marks: HTMLElement,
  popup: HTMLElement,
  metric: string,
  xKind: string,
): void {
  clear(marks);
  for (const x of withSeries) {
    for (const c of x.r.checkpoints) {
      const at = xOf(c, xKind);
      if (at === null) continue;
      const v = valueAt(x.s.points, at);
      if (v === null) continue;
      const left = u.valToPos(at, "x");
      const top = u.valToPos(v, "y");
      if (!Number.isFinite(left) || !Number.isFinite(top)) continue;
      // Outside the plotting area (a zoom): not drawn over the axes or the next chart.
      if (left < -1 || top < -1 || left > u.over.clientWidth + 1 || top > u.over.clientHeight + 1) continue;
      const cls = ["mark", c.is_best ? "best" : "", c.is_last ? "last" : ""].filter(Boolean).join(" ");
      const a = h(
        "a",
        {
          class: cls,
          href: checkpointHref(c.path),
          "data-path": c.path,
          "data-step": c.step ?? "",
          "data-best": c.is_best ? "true" : "false",
          "data-last": c.is_last ? "true" : "false",
          style: `left:${left}px;top:${top}px;border-color:${COLORS[x.i % COLORS.length]}`,
          "aria-label": `${basename(c.path)} at ${xKind} ${at}`,
        },
      );
      a.addEventListener("mouseenter", () => {
        clear(popup);
        append(popup, [
          h("strong", {}, basename(c.path)),
          c.is_best ? h("span", { class: "badge best" }, "best") : null,
          c.is_last ? h("span", { class: "badge last" }, "last") : null,
          h("div", { class: "muted" }, c.path),
          h("div", {}, [c.step !== null ? `step ${c.step}` : null, c.epoch !== null ? `epoch ${c.epoch}` : null, `${metric} ${fmtValue(v)}`].filter(Boolean).join(", ")),
          h("div", { class: "muted" }, "click to open"),
        ]);
        popup.hidden = false;
        const r = a.getBoundingClientRect();
        const w = popup.offsetWidth;
        const left = r.right + 8 + w > window.innerWidth ? r.left - 8 - w : r.right + 8;
        popup.style.left = `${Math.max(0, left) + window.scrollX}px`;
        popup.style.top = `${r.top + window.scrollY}px`;
      });
      a.addEventListener("mouseleave", () => (popup.hidden = true));
      marks.append(a);
    }
  }
}
