// A stand-in for the service in component tests: fetch is stubbed (the unit boundary here;
// SERVER's Playwright test drives the real one) with handlers per "METHOD /path".
import { vi } from "vitest";

export const BASE = "/api/v1/security/qrc";

export interface Answer {
  status?: number;
  body?: unknown;
  headers?: Record<string, string>;
}
export type Handler = (request: Request, url: URL, body: unknown) => Answer | Promise<Answer>;

export interface FakeApi {
  calls: { method: string; path: string; url: URL; body: unknown }[];
  /** Replace or add a route: "GET /keys" (path under the API base, query ignored). */
  on(route: string, handler: Handler | Answer): void;
  callsTo(route: string): { url: URL; body: unknown }[];
}

export function problem(status: number, slug: string, detail?: string): Answer {
  return {
    status,
    body: { type: `urn:qrc:problem:${slug}`, title: slug, status, detail },
    headers: { "Content-Type": "application/problem+json" },
  };
}

/** Stub global fetch; unknown routes answer 404 not-found; `/ready` answers ready. */
export function fakeApi(routes: Record<string, Handler | Answer> = {}): FakeApi {
  const table = new Map<string, Handler>();
  const calls: FakeApi["calls"] = [];
  const on = (route: string, handler: Handler | Answer) =>
    table.set(route, typeof handler === "function" ? handler : () => handler);
  on("GET /ready", { body: { status: "ready", checks: { store: "ok", custody: "online" } } });
  for (const [route, handler] of Object.entries(routes)) on(route, handler);

  vi.stubGlobal(
    "fetch",
    vi.fn(async (input: Request) => {
      const request = input instanceof Request ? input : new Request(input);
      const url = new URL(request.url);
      const path = url.pathname.startsWith(BASE) ? url.pathname.slice(BASE.length) : url.pathname;
      const text = request.method === "GET" ? "" : await request.text();
      const body: unknown = text ? JSON.parse(text) : undefined;
      calls.push({ method: request.method, path, url, body });
      const handler = table.get(`${request.method} ${path}`);
      const answer = handler ? await handler(request, url, body) : problem(404, "not-found");
      return new Response(answer.body === undefined ? null : JSON.stringify(answer.body), {
        status: answer.status ?? 200,
        headers: { "Content-Type": "application/json", ...answer.headers },
      });
    }),
  );

  return {
    calls,
    on,
    callsTo: (route) =>
      calls.filter((c) => `${c.method} ${c.path}` === route).map(({ url, body }) => ({ url, body })),
  };
}

/** A key as the API answers it. */
export function keyOut(overrides: Record<string, unknown> = {}) {
  return {
    id: "k_0ea9eb93aa6c9133a74265942080a33e",
    name: "payments",
    algorithm: "X25519MLKEM768",
    purpose: "encryption",
    status: "active",
    version: 3,
    min_decryption_version: 2,
    labels: {},
    created_at: "2026-11-29T12:40:25Z",
    ...overrides,
  };
}

/** The calling token as `GET /tokens/self` answers it. */
export function asRole(role: string): Answer {
  return { body: { id: "c_0123456789abcdef", name: `${role}-token`, role } };
}

/** Roles as an older service's `GET /tokens` reveals them: 200 for admin, else the 403. */
export function asRoleWithoutSelf(role: string): Answer {
  return role === "admin"
    ? { body: { tokens: [] } }
    : problem(403, "forbidden", `role ${role} may not do this (needs admin)`);
}
