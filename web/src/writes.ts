// Writes (only when the server runs with --allow-writes): every write is a plan shown first
// (POST /api/plan/…), then carried out only when the user confirms it (POST /api/apply with
// the plan's token). Without the flag the server answers 403 and the page says how to enable it.

import { api, ApiError, describe } from "./api";
import { clear, copyButton, errorBox, fmtBytes, fmtValue, h, shellQuote } from "./util";

interface Plan {
  plan: Record<string, unknown>;
  confirm: string | null;
}

function refused(e: unknown): HTMLElement {
  if (e instanceof ApiError && e.status === 403) {
    return h("p", { class: "muted" }, "Writes are off: start the server with ", h("code", {}, "ckpt serve --allow-writes"), " to write sidecars or prune.");
  }
  return errorBox("The plan failed:", describe(e));
}

/** The confirm step shared by both writes: the plan's view, then "do it" or "cancel". */
function confirmStep(box: HTMLElement, view: Node, confirm: string | null, label: string, onDone: (done: string) => void): void {
  clear(box);
  box.append(view);
  if (!confirm) return;
  const go = h("button", { type: "button", class: "danger", id: "apply-write" }, label);
  const cancel = h("button", { type: "button", onclick: () => clear(box) }, "cancel");
  go.addEventListener("click", async () => {
    go.disabled = true;
    try {
      const r = await api<Record<string, unknown>>("/api/apply", [["confirm", confirm]], { method: "POST" });
      clear(box);
      const done = `Done: ${JSON.stringify(r.applied ?? r)}`;
      box.append(h("p", { class: "ok", id: "write-done" }, done));
      onDone(done);
    } catch (e) {
      clear(box);
      box.append(
        errorBox(
          e instanceof ApiError && e.status === 409 ? "The tree changed since the plan:" : "The write failed:",
          describe(e) + (e instanceof ApiError && e.status === 409 ? " — plan again." : ""),
        ),
      );
    }
  });
  box.append(h("div", { class: "confirm" }, go, " ", cancel));
}

/** The checkpoint page's sidecar card: `ckpt convert-legacy --checkpoint`'s sidecar, planned then written. */
export function sidecarCard(path: string, onDone: (done: string) => void): HTMLElement {
  const box = h("div", { class: "plan" });
  const btn = h("button", { type: "button", id: "plan-sidecar" }, "plan a metadata sidecar…");
  btn.addEventListener("click", async () => {
    clear(box);
    box.append(h("p", { class: "muted" }, "planning…"));
    try {
      const p = await api<Plan>("/api/plan/sidecar", [["path", path]], { method: "POST" });
      const plan = p.plan;
      const view = h(
        "div",
        {},
        h("p", {}, h("strong", {}, fmtValue(plan.action)), " ", h("code", {}, fmtValue(plan.sidecar))),
        plan.reason ? h("p", { class: "muted" }, fmtValue(plan.reason)) : null,
        typeof plan.yaml === "string" ? h("pre", { class: "yaml" }, plan.yaml) : null,
      );
      confirmStep(box, view, p.confirm, plan.action === "replace" ? "replace the sidecar" : "write the sidecar", onDone);
    } catch (e) {
      clear(box);
      box.append(refused(e));
    }
  });
  return h(
    "div",
    {},
    h("p", { class: "muted" }, "Writes the metadata sidecar ckpt would make for this checkpoint, as this command does. The plan is shown first."),
    copyButton(`ckpt convert-legacy --checkpoint ${shellQuote(path)}`),
    btn,
    box,
  );
}

/** Prune a folder: `ckpt prune FOLDER --keep-top K --monitor M --mode …`'s plan, then its execution. */
export function pruneCard(folder: string, monitor: string | null, mode: string | null, onDone: (done: string) => void): HTMLElement {
  const box = h("div", { class: "plan" });
  const keep = h("input", { type: "number", min: "1", value: "3", id: "prune-keep", style: "width:4em" });
  const mon = h("input", { type: "text", value: monitor ?? "", id: "prune-monitor", placeholder: "metric" });
  const md = h("select", { id: "prune-mode" }, h("option", { value: "max", selected: mode !== "min" }, "max"), h("option", { value: "min", selected: mode === "min" }, "min"));
  const btn = h("button", { type: "button", id: "plan-prune" }, "plan…");
  const cmd = h("div", {});
  const drawCmd = () => {
    clear(cmd);
    cmd.append(copyButton(`ckpt prune ${shellQuote(folder)} --keep-top ${keep.value} --monitor ${shellQuote(mon.value || "METRIC")} --mode ${md.value}`));
  };
  for (const el of [keep, mon, md]) el.addEventListener("input", drawCmd);
  drawCmd();
  btn.addEventListener("click", async () => {
    clear(box);
    box.append(h("p", { class: "muted" }, "planning…"));
    try {
      const p = await api<Plan>(
        "/api/plan/prune",
        [
          ["path", folder],
          ["keep_top", keep.value],
          ["monitor", mon.value],
          ["mode", md.value],
        ],
        { method: "POST" },
      );
      const plan = p.plan;
      const decisions = Array.isArray(plan.decisions) ? (plan.decisions as Record<string, unknown>[]) : [];
      const view = h(
        "div",
        {},
        h("p", {}, `${fmtValue(plan.delete_count)} to delete, ${fmtValue(plan.keep_count)} kept, ${fmtBytes(Number(plan.bytes_freed))} freed`),
        h(
          "table",
          { class: "grid" },
          h(
            "tbody",
            {},
            decisions.map((d) =>
              h(
                "tr",
                { class: d.action === "delete" ? "unsafe" : "" },
                h("td", {}, fmtValue(d.action)),
                h("td", {}, h("code", {}, fmtValue(d.path))),
                h("td", { class: "muted" }, Array.isArray(d.reasons) ? d.reasons.map(fmtValue).join("; ") : fmtValue(d.reasons)),
              ),
            ),
          ),
        ),
      );
      confirmStep(box, view, Number(plan.delete_count) > 0 ? p.confirm : null, `delete ${fmtValue(plan.delete_count)} checkpoint(s)`, onDone);
    } catch (e) {
      clear(box);
      box.append(refused(e));
    }
  });
  return h(
    "div",
    {},
    h("p", {}, "Prune ", h("code", {}, folder), ": keep the top ", keep, " by ", mon, " ", md, " ", btn),
    h("p", { class: "muted small" }, "What ", h("code", {}, "ckpt prune"), " would delete is shown first; nothing is removed until you confirm. The same from a shell (a dry run without --yes):"),
    cmd,
    box,
  );
}
