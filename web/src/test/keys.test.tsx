import { screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { asRole, fakeApi, keyOut, problem, type FakeApi } from "./fakeApi";
import { signedIn } from "./render";

const KEY = keyOut();

function keyService(role: string): FakeApi {
  let current = KEY;
  const api = fakeApi({
    "GET /tokens/self": asRole(role),
    "GET /dashboard": problem(404, "not-found"),
    "GET /keys": { body: { keys: [KEY, keyOut({ id: "k_2", name: "receipts" })], next_cursor: "k_2" } },
  });
  api.on(`GET /keys/${KEY.id}`, () => ({ body: current }));
  api.on(`POST /keys/${KEY.id}/rotate`, () => {
    current = { ...current, version: current.version + 1 };
    return { body: current };
  });
  return api;
}

async function openKey(role: string) {
  const api = keyService(role);
  const session = await signedIn();
  await session.user.click(screen.getByTestId("nav-keys"));
  const rows = await screen.findAllByTestId("key-row");
  expect(rows.map((r) => r.getAttribute("data-key-id"))).toEqual([KEY.id, "k_2"]);
  await session.user.click(within(rows[0]!).getByRole("button", { name: "payments" }));
  const detail = await screen.findByTestId("key-detail");
  await within(detail).findAllByTestId("key-version");
  return { api, detail, ...session };
}

describe("keys", () => {
  it("lists keys from the server's page and shows a key's versions", async () => {
    const { api, detail } = await openKey("viewer");
    const versions = within(detail).getAllByTestId("key-version");
    expect(versions.map((v) => v.getAttribute("data-version"))).toEqual(["3", "2", "1"]);
    expect(versions[0]).toHaveTextContent("primary");
    expect(versions[2]).toHaveTextContent("retired");
    expect(api.callsTo("GET /keys")[0]?.url.searchParams.get("limit")).toBe("25");
  });

  it("shows each version's algorithm and state as the service gives them", async () => {
    const api = keyService("viewer");
    api.on(`GET /keys/${KEY.id}/versions`, {
      body: {
        versions: [
          { version: 3, algorithm: "X25519MLKEM768", state: "primary", created_at: "2026-12-01T10:00:00Z" },
          { version: 2, algorithm: "ML-KEM-1024", state: "active", created_at: "2026-11-01T10:00:00Z" },
          { version: 1, algorithm: "ML-KEM-1024", state: "destroyed", created_at: "2026-10-01T10:00:00Z", destroyed_at: "2026-11-02T10:00:00Z" },
        ],
      },
    });
    const { user } = await signedIn();
    await user.click(screen.getByTestId("nav-keys"));
    const rows = await screen.findAllByTestId("key-row");
    await user.click(within(rows[0]!).getByRole("button", { name: "payments" }));
    const detail = await screen.findByTestId("key-detail");
    await waitFor(() =>
      expect(within(detail).getAllByTestId("key-version")[1]).toHaveTextContent("ML-KEM-1024"),
    );
    const versions = within(detail).getAllByTestId("key-version");
    expect(versions[0]).toHaveTextContent("X25519MLKEM768");
    expect(versions[1]).toHaveTextContent("decrypts and verifies");
    expect(versions[2]).toHaveTextContent("destroyed");
  });

  it("offers no lifecycle buttons on the service's own keys, even to an admin", async () => {
    const api = keyService("admin");
    api.on(`GET /keys/${KEY.id}`, { body: { ...KEY, name: "qrc-audit-signing", system: true } });
    const { user } = await signedIn();
    await user.click(screen.getByTestId("nav-keys"));
    const rows = await screen.findAllByTestId("key-row");
    await user.click(within(rows[0]!).getByRole("button", { name: "payments" }));
    expect(await screen.findByTestId("system-key")).toBeInTheDocument();
    expect(screen.queryByTestId("rotate-button")).not.toBeInTheDocument();
    expect(screen.queryByTestId("destroy-button")).not.toBeInTheDocument();
  });

  it("pages with the server's cursor", async () => {
    const { api, user } = await openKey("viewer");
    await user.click(screen.getByRole("button", { name: "Next" }));
    await waitFor(() => expect(api.callsTo("GET /keys")).toHaveLength(2));
    expect(api.callsTo("GET /keys")[1]?.url.searchParams.get("cursor")).toBe("k_2");
  });

  it("hides the lifecycle buttons from a viewer", async () => {
    await openKey("viewer");
    expect(screen.queryByTestId("rotate-button")).not.toBeInTheDocument();
    expect(screen.queryByTestId("revoke-button")).not.toBeInTheDocument();
    expect(screen.queryByTestId("destroy-button")).not.toBeInTheDocument();
  });

  it("shows them to a key manager", async () => {
    await openKey("key_manager");
    expect(screen.getByTestId("rotate-button")).toBeInTheDocument();
    expect(screen.getByTestId("revoke-button")).toBeInTheDocument();
    expect(screen.getByTestId("destroy-button")).toBeInTheDocument();
  });

  it("rotates only after the confirmation", async () => {
    const { api, user, detail } = await openKey("admin");
    await user.click(screen.getByTestId("rotate-button"));
    const dialog = screen.getByRole("dialog");
    expect(dialog).toHaveTextContent("Rotate payments?");
    expect(api.callsTo(`POST /keys/${KEY.id}/rotate`)).toHaveLength(0);
    await user.click(within(dialog).getByTestId("confirm-button"));
    await waitFor(() => expect(screen.queryByRole("dialog")).not.toBeInTheDocument());
    expect(api.callsTo(`POST /keys/${KEY.id}/rotate`)).toEqual([
      expect.objectContaining({ body: { expected_version: 3 } }),
    ]);
    await waitFor(() =>
      expect(within(detail).getAllByTestId("key-version")[0]).toHaveAttribute(
        "data-version",
        "4",
      ),
    );
  });

  it("Escape closes the dialog without acting, and focus goes back to the button", async () => {
    const { api, user } = await openKey("admin");
    const rotate = screen.getByTestId("rotate-button");
    await user.click(rotate);
    expect(screen.getByRole("dialog")).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Cancel" })).toHaveFocus();
    await user.keyboard("{Escape}");
    expect(screen.queryByRole("dialog")).not.toBeInTheDocument();
    expect(rotate).toHaveFocus();
    expect(api.callsTo(`POST /keys/${KEY.id}/rotate`)).toHaveLength(0);
  });

  it("keeps Tab inside the dialog", async () => {
    const { user } = await openKey("admin");
    await user.click(screen.getByTestId("destroy-button"));
    const dialog = screen.getByRole("dialog");
    for (let i = 0; i < 5; i += 1) {
      await user.tab();
      expect(dialog).toContainElement(document.activeElement as HTMLElement);
    }
    await user.tab({ shift: true });
    expect(dialog).toContainElement(document.activeElement as HTMLElement);
  });

  it("revokes with the chosen reason and schedules destruction with the chosen delay", async () => {
    const { api, user } = await openKey("admin");
    api.on(`POST /keys/${KEY.id}/revoke`, { body: keyOut({ status: "deactivated" }) });
    api.on(`DELETE /keys/${KEY.id}`, { body: keyOut({ status: "pending_destruction" }) });
    await user.click(screen.getByTestId("revoke-button"));
    await user.selectOptions(screen.getByLabelText("Reason"), "key_compromise");
    await user.click(screen.getByTestId("confirm-button"));
    await waitFor(() =>
      expect(api.callsTo(`POST /keys/${KEY.id}/revoke`)[0]?.body).toEqual({
        reason: "key_compromise",
      }),
    );
    await waitFor(() => expect(screen.queryByRole("dialog")).not.toBeInTheDocument());
    await user.click(screen.getByTestId("destroy-button"));
    const days = screen.getByLabelText("Days to wait");
    await user.clear(days);
    await user.type(days, "30");
    await user.click(screen.getByTestId("confirm-button"));
    await waitFor(() =>
      expect(api.callsTo(`DELETE /keys/${KEY.id}`)[0]?.url.searchParams.get("days")).toBe("30"),
    );
  });

  it("suspends after a confirmation", async () => {
    const { api, user } = await openKey("key_manager");
    api.on(`POST /keys/${KEY.id}/suspend`, { body: keyOut({ status: "suspended" }) });
    await user.click(screen.getByRole("button", { name: "Suspend" }));
    expect(api.callsTo(`POST /keys/${KEY.id}/suspend`)).toHaveLength(0);
    await user.click(screen.getByTestId("confirm-button"));
    await waitFor(() => expect(api.callsTo(`POST /keys/${KEY.id}/suspend`)).toHaveLength(1));
  });

  it("shows the service's refusal inside the dialog", async () => {
    const { api, user } = await openKey("admin");
    api.on(
      `POST /keys/${KEY.id}/rotate`,
      problem(409, "conflict", "key 'payments' is at version 4, not 3"),
    );
    await user.click(screen.getByTestId("rotate-button"));
    await user.click(screen.getByTestId("confirm-button"));
    expect(await within(screen.getByRole("dialog")).findByRole("alert")).toHaveTextContent(
      "is at version 4, not 3",
    );
  });
});

describe("from a key to its audit events", () => {
  it("opens the audit log filtered by the key", async () => {
    const { api, user } = await openKey("admin");
    api.on("GET /audit/logs", { body: { events: [] } });
    api.on("GET /audit/verify", { body: { valid: true, events: 0, checkpoints_verified: 0, reason: "empty" } });
    await user.click(screen.getByRole("link", { name: "Audit events of this key" }));
    await screen.findByTestId("audit-table");
    expect(api.callsTo("GET /audit/logs")[0]?.url.searchParams.get("key")).toBe(KEY.id);
    expect(screen.getByLabelText("Key (ID or name)")).toHaveValue(KEY.id);
  });

  it("is not offered to a role that may not read the audit log", async () => {
    await openKey("key_manager");
    expect(screen.queryByRole("link", { name: "Audit events of this key" })).not.toBeInTheDocument();
  });
});

describe("new key", () => {
  it("creates a key with the chosen purpose and algorithm, then opens it", async () => {
    const api = keyService("key_manager");
    api.on("GET /algorithms/status", {
      body: {
        algorithms: [
          { id: "ML-DSA-65", type: "digital_signature", family: "lattice", nist_level: 3, status: "active", standard: "FIPS 204", provider: "pyca", quantum_safe: true, sizes: {} },
          { id: "ML-KEM-768", type: "key_exchange", family: "lattice", nist_level: 3, status: "active", standard: "FIPS 203", provider: "pyca", quantum_safe: true, sizes: {} },
        ],
      },
    });
    api.on("POST /keys/generate", { status: 201, body: KEY });
    const { user } = await signedIn();
    await user.click(screen.getByTestId("nav-keys"));
    await user.click(await screen.findByTestId("create-key"));
    expect(screen.getByTestId("key-name-input")).toHaveFocus();
    await user.keyboard("receipts");
    const dialog = screen.getByRole("dialog");
    await user.selectOptions(within(dialog).getByLabelText("Purpose"), "signing");
    const algorithm = within(dialog).getByLabelText("Algorithm");
    await waitFor(() => expect(within(algorithm).queryByText("ML-DSA-65")).toBeInTheDocument());
    expect(within(algorithm).queryByText("ML-KEM-768")).not.toBeInTheDocument();
    await user.selectOptions(algorithm, "ML-DSA-65");
    await user.click(screen.getByTestId("confirm-button"));
    await waitFor(() =>
      expect(api.callsTo("POST /keys/generate")[0]?.body).toEqual({
        name: "receipts",
        purpose: "signing",
        algorithm: "ML-DSA-65",
      }),
    );
    expect(await screen.findByTestId("key-detail")).toBeInTheDocument();
  });

  it("is not offered to a viewer", async () => {
    keyService("viewer");
    const { user } = await signedIn();
    await user.click(screen.getByTestId("nav-keys"));
    await screen.findAllByTestId("key-row");
    expect(screen.queryByTestId("create-key")).not.toBeInTheDocument();
  });
});
