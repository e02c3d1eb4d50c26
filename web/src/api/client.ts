// The typed API client: openapi-fetch over the paths generated from the service's OpenAPI
// document (schema.d.ts), with the session's bearer token and one place that notices a lost
// session (401) and an unreachable or unavailable service (network error, 503).
import createClient from "openapi-fetch";
import type { paths } from "./schema";

export const API = "/api/v1/security/qrc";

/** What went wrong with a call, as the views need to tell it apart. */
export type ApiErrorKind = "unauthorized" | "forbidden" | "not-found" | "unavailable" | "other";

export class ApiError extends Error {
  readonly status: number;
  readonly kind: ApiErrorKind;
  readonly detail: string | undefined;

  constructor(status: number, title: string, detail?: string) {
    super(detail ? `${title}: ${detail}` : title);
    this.name = "ApiError";
    this.status = status;
    this.detail = detail;
    this.kind =
      status === 401
        ? "unauthorized"
        : status === 403
          ? "forbidden"
          : status === 404
            ? "not-found"
            : status === 0 || status === 503
              ? "unavailable"
              : "other";
  }
}

export interface ApiListener {
  /** The service could not be reached or answered 503 (message), or answered again (null). */
  outage(message: string | null): void;
  /** The token was refused (401) on a call made while signed in. */
  unauthorized(): void;
}

let token: string | null = null;
let listener: ApiListener | null = null;

export function setToken(value: string | null): void {
  token = value;
}

export function setApiListener(value: ApiListener | null): void {
  listener = value;
}

interface Problem {
  title?: unknown;
  detail?: unknown;
}

/** An RFC 9457 problem document's title and detail, when the body is one. */
async function problemOf(response: Response): Promise<Problem> {
  try {
    const body: unknown = await response.clone().json();
    return typeof body === "object" && body !== null ? (body as Problem) : {};
  } catch {
    return {};
  }
}

/** fetch with the bearer token, turning every failure into an ApiError (thrown). */
export async function authorizedFetch(input: Request): Promise<Response> {
  const request = new Request(input);
  if (token) request.headers.set("Authorization", `Bearer ${token}`);
  let response: Response;
  try {
    // Looked up at call time, so that tests can stub the global fetch.
    response = await globalThis.fetch(request);
  } catch {
    listener?.outage("The qrc service cannot be reached. Check that it is running.");
    throw new ApiError(0, "Service unreachable");
  }
  if (response.ok) {
    listener?.outage(null);
    return response;
  }
  const problem = await problemOf(response);
  const title = typeof problem.title === "string" ? problem.title : response.statusText || "Error";
  const detail = typeof problem.detail === "string" ? problem.detail : undefined;
  if (response.status === 503) {
    const retry = response.headers.get("Retry-After");
    listener?.outage(
      `The service is unavailable: ${detail ?? title}${retry ? ` (retry in ${retry} s)` : ""}`,
    );
  } else {
    listener?.outage(null);
  }
  if (response.status === 401 && token) listener?.unauthorized();
  throw new ApiError(response.status, title, detail);
}

/** The typed client: `api.GET("/api/v1/security/qrc/keys", { params: { query } })`. */
export const api = createClient<paths>({ baseUrl: origin(), fetch: authorizedFetch });

/** Same origin as the page: the service serves both (absolute, as Request needs outside a browser). */
function origin(): string {
  return globalThis.location?.origin ?? "";
}

/** The data of an openapi-fetch result (errors have already been thrown as ApiError). */
export function need<T>(result: { data?: T }): T {
  if (result.data === undefined) throw new ApiError(500, "Empty answer");
  return result.data;
}

/**
 * GET a route that the generated document does not (yet) describe, or that answers a file:
 * the compliance report, the CBOM. The path is relative to the API base.
 */
export async function getRaw(path: string): Promise<Response> {
  return authorizedFetch(new Request(`${origin()}${API}${path}`, { method: "GET" }));
}

/**
 * The service's readiness (`GET /ready`, no token): null when ready, else what is not
 * ("custody: offline"). Told apart from API failures: key metadata may still read while
 * the HSM is down, and the page should say the HSM is down all the same.
 */
export async function notReady(): Promise<string | null> {
  let response: Response;
  try {
    response = await globalThis.fetch(new Request(`${origin()}${API}/ready`));
  } catch {
    return "The qrc service cannot be reached. Check that it is running.";
  }
  if (response.ok) return null;
  let failing = "";
  try {
    const body = (await response.json()) as { checks?: Record<string, unknown> };
    failing = Object.entries(body.checks ?? {})
      .filter(([, value]) => value !== "ok" && value !== "online")
      .map(([name, value]) => `${name}: ${String(value)}`)
      .join(", ");
  } catch {
    // Not JSON: the status alone says enough.
  }
  return `The service is not ready (HTTP ${response.status})${failing ? `: ${failing}` : ""}.`;
}

/** What to tell the user about a failed call (the problem's title and detail). */
export function messageOf(failure: unknown): string {
  return failure instanceof Error ? failure.message : String(failure);
}
