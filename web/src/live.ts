// Live updates: one EventSource on /api/events for the page's whole life. Each event is
// handed to the page shown (the catalog inserts, updates or removes rows); the indicator in the
// header says whether the stream is up.

import { apiUrl } from "./api";
import { catalogEvent } from "./catalog";
import { checkpointEvent } from "./checkpoint";
import { h } from "./util";

export const indicator = h("span", { class: "live off", id: "live", title: "live updates" }, "○ connecting");

let generation: number | null = null;
let lastEventAt = 0;

function set(state: "on" | "off" | "error", text: string, title: string): void {
  indicator.className = `live ${state}`;
  indicator.textContent = text;
  indicator.title = title;
  indicator.setAttribute("data-state", state);
}

export function startLive(): void {
  if (typeof EventSource === "undefined") {
    set("error", "○ no live updates", "this browser has no EventSource");
    return;
  }
  const es = new EventSource(apiUrl("/api/events"));
  let opened = false;
  es.addEventListener("open", () => {
    opened = true;
  });
  es.addEventListener("hello", (ev) => {
    const d = parse(ev);
    const g = typeof d.generation === "number" ? d.generation : null;
    // A reconnection after missed rebuilds: the page reloads its data (not the document).
    if (generation !== null && g !== null && g !== generation) catalogEvent("resync", {});
    generation = g;
    set("on", "● live", `live updates on (catalog generation ${g ?? "?"}, ${d.total ?? "?"} checkpoints)`);
  });
  for (const kind of ["added", "changed", "removed"]) {
    es.addEventListener(kind, (ev) => {
      const d = parse(ev);
      if (typeof d.generation === "number") generation = d.generation;
      lastEventAt = Date.now();
      set("on", "● live", `last change ${new Date(lastEventAt).toLocaleTimeString()} (generation ${generation ?? "?"})`);
      catalogEvent(kind, d as { entry?: never; path?: string });
      checkpointEvent(kind, d as { entry?: never; path?: string });
    });
  }
  es.addEventListener("error", () => {
    if (es.readyState === EventSource.CLOSED) {
      // Not an event stream at all (an error answer): EventSource gives up; say so.
      set("error", "○ live updates unavailable", opened ? "the event stream closed" : "/api/events did not answer with an event stream");
    } else {
      set("off", "○ reconnecting", "the event stream dropped; the browser is reconnecting");
    }
  });
}

function parse(ev: Event): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse((ev as MessageEvent<string>).data);
    return v && typeof v === "object" ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}
