// The JSON API of `ckpt serve` (docs/serve-api.md). Every call goes through `api()`, which
// turns an error answer (`{"error": "…"}`, any 4xx/5xx, a network failure, a non-JSON body)
// into an ApiError carrying the server's own one-line message, so pages can show it.

/** The access token the page was opened with (`/?token=…`), sent with every request. */
const token = new URLSearchParams(location.search).get("token");

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly endpoint: string,
  ) {
    super(message);
  }
}

export function apiUrl(endpoint: string, params: [string, string][] = []): string {
  const sp = new URLSearchParams();
  for (const [k, v] of params) sp.append(k, v);
  if (token) sp.append("token", token);
  const s = sp.toString();
  return `${endpoint}${s ? "?" + s : ""}`;
}

export async function api<T>(endpoint: string, params: [string, string][] = [], init?: RequestInit): Promise<T> {
  const url = apiUrl(endpoint, params);
  let res: Response;
  try {
    res = await fetch(url, { headers: { Accept: "application/json" }, ...init });
  } catch (e) {
    throw new ApiError(0, `the server did not answer (${String(e)})`, endpoint);
  }
  const text = await res.text();
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    throw new ApiError(res.status, `${res.status} ${res.statusText}: not JSON`, endpoint);
  }
  if (!res.ok) {
    const msg =
      body && typeof body === "object" && "error" in body ? String((body as { error: unknown }).error) : `${res.status} ${res.statusText}`;
    throw new ApiError(res.status, msg, endpoint);
  }
  return body as T;
}

export function describe(e: unknown): string {
  if (e instanceof ApiError) {
    return e.status ? `${e.endpoint} answered ${e.status}: ${e.message}` : `${e.endpoint}: ${e.message}`;
  }
  return String(e);
}

// ---- shapes (only what the UI reads; the rest is shown generically) ----

export interface Conflict {
  field: string;
  values: { source: string; value: unknown; chosen: boolean }[];
}

/** One element of `ckpt catalog --format json`'s `checkpoints`. */
export interface Entry {
  path: string;
  experiment: string | null;
  run: string | null;
  task: string | null;
  format: string | null;
  epoch: number | null;
  global_step: number | null;
  metrics: Record<string, unknown>;
  monitor: string | null;
  mode: string | null;
  model: Record<string, unknown>;
  hparams: Record<string, unknown>;
  data: Record<string, unknown>;
  params: number | null;
  tensors: number | null;
  size_bytes: number | null;
  modified: string | null;
  is_best: boolean | null;
  is_last: boolean | null;
  security: string | null;
  sources: Record<string, string>;
  conflicts: Conflict[];
  error: string | null;
  [k: string]: unknown;
}

export interface Page {
  checkpoints: Entry[];
  total: number;
  size_bytes?: number;
  generation?: number;
}

export interface Field {
  name: string;
  kind: string;
  count: number;
}

export interface Detail {
  entry: Entry;
  inspect: unknown;
  scan: unknown;
  identity: unknown;
  tensors?: unknown;
}

export interface CompareAnswer {
  paths: string[];
  labels?: string[];
  fields: { section?: string; field: string; values: unknown[]; differs: boolean }[];
  tensors?: { added?: unknown[]; removed?: unknown[]; reshaped?: unknown[]; retyped?: unknown[] };
  identity?: unknown;
}

export interface CurveRun {
  experiment: string | null;
  run: string | null;
  sources: { kind: string; path: string }[];
  /** `x`: what a point's first number counts (`step`, `epoch`, or `row` when the log has no step). */
  series: { metric: string; source: number; x?: string; points: [number, number][] }[];
  checkpoints: { path: string; step: number | null; epoch: number | null; is_best: boolean; is_last: boolean }[];
  warnings: string[];
}
