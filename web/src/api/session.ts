// The signed-in token: in memory and in sessionStorage (so a reload keeps it for this tab),
// never in the URL or localStorage; and the token's role.
import { api, ApiError, setToken } from "./client";
import { ROLES, type Role } from "./types";

const STORAGE_KEY = "qrc.token";

export function storedToken(): string | null {
  try {
    return sessionStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

export function keepToken(token: string | null): void {
  setToken(token);
  try {
    if (token) sessionStorage.setItem(STORAGE_KEY, token);
    else sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // Storage disabled: the token lives in memory only, and a reload signs out.
  }
}

const ROLE_IN_DETAIL = /\brole (\w+) may not\b/;

/**
 * The token's role, and a check that the token is accepted at all (a 401 throws).
 *
 * `GET /tokens/self` names it. A service too old to have that route (404) is asked for the
 * token list instead, which only an admin may read: 200 means admin; otherwise the 403
 * problem's detail names the role. A role it cannot read is `null`, and the page then offers
 * no actions.
 */
export async function resolveRole(): Promise<Role | null> {
  try {
    const self = await api.GET("/api/v1/security/qrc/tokens/self");
    return ROLES.find((role) => role === self.data?.role) ?? null;
  } catch (error) {
    if (!(error instanceof ApiError && error.kind === "not-found")) throw error;
  }
  try {
    await api.GET("/api/v1/security/qrc/tokens");
    return "admin";
  } catch (error) {
    if (error instanceof ApiError && error.kind === "forbidden") {
      const named = ROLE_IN_DETAIL.exec(error.detail ?? "")?.[1];
      return ROLES.find((role) => role === named) ?? null;
    }
    throw error;
  }
}
