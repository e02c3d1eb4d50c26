import { render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";
import { Events } from "../views/Events";
import { dashboard } from "./dashboard";
import { asRole, fakeApi, problem } from "./fakeApi";
import { signedIn } from "./render";

function auditEvent(seq: number, eventType = "key.rotate") {
  return {
    seq,
    at: "2026-12-07T12:00:00Z",
    event_type: eventType,
    actor: "token:c_1:admin-token",
    result: "success",
    key_id: "k_1",
    key_version: 2,
    details: {},
    hash: "ab".repeat(32),
  };
}

function securityEvent(id: number, severity = "high") {
  return {
    id,
    at: "2026-12-07T12:00:00Z",
    event_type: "authentication_failure",
    severity,
    source: "api",
    details: { source: "10.0.0.1" },
  };
}

describe("audit log", () => {
  it("shows events, the chain status, filters and pages on the server", async () => {
    const api = fakeApi({
      "GET /tokens/self": asRole("auditor"),
      "GET /dashboard": { body: dashboard() },
      "GET /audit/logs": { body: { events: [auditEvent(1), auditEvent(2)], next_cursor: "c2" } },
      "GET /audit/verify": {
        body: { valid: true, events: 2, checkpoints_verified: 1, reason: "2 events form an intact chain" },
      },
    });
    const { user } = await signedIn();
    await user.click(screen.getByTestId("nav-audit"));
    expect(await screen.findAllByTestId("audit-row")).toHaveLength(2);
    expect(within(screen.getByTestId("audit-table")).getAllByText("key.rotate")).toHaveLength(2);
    expect(await screen.findByText("Intact")).toBeInTheDocument();

    await user.type(screen.getByLabelText("Event type"), "key.rotate");
    await user.selectOptions(screen.getByLabelText("Result"), "denied");
    await user.click(screen.getByRole("button", { name: "Apply" }));
    await waitFor(() => expect(api.callsTo("GET /audit/logs")).toHaveLength(2));
    const filtered = api.callsTo("GET /audit/logs")[1]!.url.searchParams;
    expect(filtered.get("event_type")).toBe("key.rotate");
    expect(filtered.get("result")).toBe("denied");

    await user.click(screen.getByRole("button", { name: "Next" }));
    await waitFor(() => expect(api.callsTo("GET /audit/logs")).toHaveLength(3));
    expect(api.callsTo("GET /audit/logs")[2]!.url.searchParams.get("cursor")).toBe("c2");
  });

  it("says so when the chain is broken", async () => {
    fakeApi({
      "GET /tokens/self": asRole("admin"),
      "GET /dashboard": { body: dashboard() },
      "GET /audit/logs": { body: { events: [] } },
      "GET /audit/verify": {
        body: { valid: false, events: 9, checkpoints_verified: 0, first_bad_event: 4, reason: "hash mismatch" },
      },
    });
    const { user } = await signedIn();
    await user.click(screen.getByTestId("nav-audit"));
    expect(await screen.findByText("BROKEN")).toBeInTheDocument();
    expect(screen.getByTestId("chain-status")).toHaveTextContent("First bad event: #4");
  });
});

describe("security events", () => {
  it("polls for the events after the last one seen, newest first", async () => {
    let round = 0;
    const api = fakeApi({
      "GET /security/events": () => {
        round += 1;
        return { body: { events: round === 1 ? [securityEvent(1), securityEvent(2)] : round === 2 ? [securityEvent(3, "critical")] : [] } };
      },
    });
    render(<Events pollMs={40} />);
    expect(await screen.findAllByTestId("event-row")).toHaveLength(2);
    await waitFor(() => expect(screen.getAllByTestId("event-row")).toHaveLength(3));
    expect(screen.getAllByTestId("event-row")[0]).toHaveTextContent("critical");
    const afters = () =>
      api.callsTo("GET /security/events").map((c) => c.url.searchParams.get("after"));
    await waitFor(() => expect(afters().slice(0, 3)).toEqual([null, "2", "3"]));
  });
});

describe("inventory, algorithms, compliance", () => {
  it("shows the inventory and downloads the CBOM with the token", async () => {
    const api = fakeApi({
      "GET /tokens/self": asRole("auditor"),
      "GET /dashboard": { body: dashboard() },
      "GET /inventory": (_request, url) =>
        url.searchParams.get("format") === "cbom"
          ? { body: { bomFormat: "CycloneDX", specVersion: "1.6" } }
          : {
              body: {
                generated_at: "2026-12-07T12:00:00Z",
                custody: "local",
                summary: { keys: 5, deprecated_keys: 1 },
                algorithms: [
                  { id: "ML-KEM-768", kind: "kem", family: "lattice", status: "active", quantum_safe: true, keys: 5, certificates: 0, objects: 2, found: 0 },
                ],
              },
            },
    });
    URL.createObjectURL = () => "blob:cbom";
    URL.revokeObjectURL = () => undefined;
    // jsdom does not navigate; the click on the download link is what matters.
    const saved: string[] = [];
    vi.spyOn(HTMLAnchorElement.prototype, "click").mockImplementation(function (this: HTMLAnchorElement) {
      saved.push(this.download);
    });
    const { user } = await signedIn();
    await user.click(screen.getByTestId("nav-inventory"));
    const table = await screen.findByTestId("inventory-table");
    expect(within(table).getByText("ML-KEM-768")).toBeInTheDocument();
    await user.click(screen.getByTestId("download-cbom"));
    await waitFor(() =>
      expect(api.callsTo("GET /inventory").some((c) => c.url.searchParams.get("format") === "cbom")).toBe(true),
    );
    await waitFor(() => expect(saved).toEqual(["qrc-cbom.cdx.json"]));
  });

  it("lists algorithms, and the policy for an admin", async () => {
    fakeApi({
      "GET /tokens/self": asRole("admin"),
      "GET /dashboard": { body: dashboard() },
      "GET /algorithms/status": {
        body: {
          algorithms: [
            { id: "ML-DSA-65", type: "digital_signature", family: "lattice", nist_level: 3, status: "active", standard: "FIPS 204", provider: "pyca", quantum_safe: true, sizes: { public_key: 1952 } },
          ],
        },
      },
      "POST /protocols/update": {
        body: { applied: false, changes: [], affected_keys: [], policy: { tls_mode: "pq-only", default_algorithms: { signing: "ML-DSA-65" }, algorithm_status: {} } },
      },
    });
    const { user } = await signedIn();
    await user.click(screen.getByTestId("nav-algorithms"));
    expect(await screen.findByText("ML-DSA-65", { selector: "th" })).toBeInTheDocument();
    expect(await screen.findByText("pq-only")).toBeInTheDocument();
  });

  it("offers the compliance report in three formats", async () => {
    fakeApi({
      "GET /tokens/self": asRole("auditor"),
      "GET /dashboard": problem(404, "not-found"),
      "GET /compliance/report": {
        body: {
          generated_at: "2026-12-07T12:00:00Z",
          overall_status: "pass",
          counts: { pass: 1, fail: 0, manual: 0, notApplicable: 0 },
          frameworks: [{ id: "fips-203", name: "FIPS 203 (ML-KEM)", status: "pass" }],
          controls: [
            { id: "fips-203-kem", framework: "fips-203", reference: "FIPS 203", title: "ML-KEM in use", outcome: "pass", finding: "4 keys", remediation: null },
          ],
        },
      },
    });
    const user = userEvent.setup();
    await signedIn();
    await user.click(screen.getByTestId("nav-compliance"));
    expect(await screen.findByTestId("download-pdf")).toBeInTheDocument();
    expect(screen.getByTestId("download-html")).toBeInTheDocument();
    expect(screen.getByTestId("compliance-table")).toHaveTextContent("FIPS 203");
  });
});

describe("policy change", () => {
  it("previews a status change (dry run) and applies it only after the confirmation", async () => {
    const plan = {
      applied: false,
      changes: ["ML-KEM-768: deprecated"],
      affected_keys: [{ id: "k_1", name: "legacy", algorithm: "ML-KEM-768", status: "active", action: "rotate to an active algorithm" }],
      policy: { tls_mode: "pq-only", default_algorithms: {}, algorithm_status: {} },
    };
    const api = fakeApi({
      "GET /tokens/self": asRole("admin"),
      "GET /dashboard": { body: dashboard() },
      "GET /algorithms/status": {
        body: {
          algorithms: [
            { id: "ML-KEM-768", type: "key_exchange", family: "lattice", nist_level: 3, status: "active", standard: "FIPS 203", provider: "pyca", quantum_safe: true, sizes: {} },
          ],
        },
      },
      "POST /protocols/update": (_request, _url, body) => ({
        body: { ...plan, applied: (body as { dry_run?: boolean }).dry_run === false },
      }),
    });
    const { user } = await signedIn();
    await user.click(screen.getByTestId("nav-algorithms"));
    await user.click(await screen.findByRole("button", { name: "Preview change" }));
    const dialog = await screen.findByRole("dialog");
    expect(within(dialog).getByTestId("affected-keys")).toHaveTextContent("legacy");
    const sent = () => api.callsTo("POST /protocols/update").map((c) => c.body);
    expect(sent()).not.toContainEqual(expect.objectContaining({ dry_run: false }));
    await user.click(within(dialog).getByTestId("confirm-button"));
    await waitFor(() =>
      expect(sent()).toContainEqual({ algorithm_status: { "ML-KEM-768": "deprecated" }, dry_run: false }),
    );
    expect(await screen.findByText(/Applied: ML-KEM-768: deprecated/)).toBeInTheDocument();
  });
});
