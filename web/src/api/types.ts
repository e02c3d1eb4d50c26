// Names for the generated schema's types, so views read `Key`, not the schema's path.
import type { components } from "./schema";

type Schemas = components["schemas"];

export type Key = Schemas["KeyOut"];
export type KeyVersion = Schemas["KeyVersionOut"];
export type KeyList = Schemas["KeyList"];
export type AlgorithmStatus = Schemas["AlgorithmStatus"];
export type AuditEvent = Schemas["AuditEventOut"];
export type AuditVerify = Schemas["AuditVerifyOut"];
export type SecurityEvent = Schemas["SecurityEventOut"];
export type ProtocolPlan = Schemas["ProtocolPlan"];

export type Role = "admin" | "key_manager" | "crypto_user" | "auditor" | "viewer";
export const ROLES: readonly Role[] = ["admin", "key_manager", "crypto_user", "auditor", "viewer"];

/** Roles that may change a key's lifecycle (docs/api.md, route table). */
export function canManageKeys(role: Role | null): boolean {
  return role === "admin" || role === "key_manager";
}

export type Dashboard = Schemas["QRCSecurityDashboard"];
export type AlgorithmInfo = Schemas["QRCAlgorithmInfo"];
export type KeyStats = Schemas["QRCKeyManagementStats"];
export type AtRest = Schemas["DataEncryptionStatus"];
export type EncryptionDetails = Schemas["QRCEncryptionDetails"];
export type InTransit = Schemas["NetworkSecurityStatus"];
export type GroupCount = Schemas["GroupCount"];

/**
 * Which roles may read each view's routes (docs/api.md, route table). A view the signed-in
 * role may not read is not requested at all: each refused request is an audit event.
 */
export const READERS = {
  overview: ["admin", "key_manager", "auditor", "viewer"],
  keys: ["admin", "key_manager", "crypto_user", "viewer"],
  algorithms: ROLES,
  audit: ["admin", "auditor"],
  events: ["admin", "auditor"],
  inventory: ["admin", "auditor"],
  compliance: ["admin", "auditor"],
  tokens: ["admin"],
} as const satisfies Record<string, readonly Role[]>;

export type ViewName = keyof typeof READERS;

/** Whether `role` may read `view`; an unknown role may try (the service decides). */
export function mayRead(view: ViewName, role: Role | null): boolean {
  return role === null || (READERS[view] as readonly Role[]).includes(role);
}
