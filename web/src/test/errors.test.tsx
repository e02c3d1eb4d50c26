import { render, screen, waitFor } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";
import { App } from "../App";
import { dashboard } from "./dashboard";
import { asRole, fakeApi, problem } from "./fakeApi";
import { signedIn } from "./render";

describe("error states", () => {
  it("shows the error banner when the service cannot be reached", async () => {
    vi.stubGlobal("fetch", vi.fn(async () => Promise.reject(new TypeError("Failed to fetch"))));
    render(<App />);
    expect(await screen.findByTestId("error-banner")).toHaveTextContent(/cannot be reached/);
  });

  it("shows the error banner when a call answers 503 (HSM down), and clears it after", async () => {
    const api = fakeApi({
      "GET /tokens/self": asRole("admin"),
      "GET /dashboard": {
        ...problem(503, "custody-unavailable", "the root KEK (HSM) is unreachable"),
        headers: { "Retry-After": "5", "Content-Type": "application/problem+json" },
      },
    });
    const { user } = await signedIn();
    const banner = await screen.findByTestId("error-banner");
    expect(banner).toHaveTextContent("HSM) is unreachable (retry in 5 s)");
    expect(screen.getAllByTestId("error-banner")).toHaveLength(1);
    api.on("GET /dashboard", { body: dashboard() });
    await user.click(screen.getByTestId("nav-keys"));
    await user.click(screen.getByTestId("nav-overview"));
    await screen.findByTestId("total-keys");
    expect(screen.queryByTestId("error-banner")).not.toBeInTheDocument();
  });

  it("shows the error banner when /ready fails, naming the failing check", async () => {
    fakeApi({
      "GET /ready": { status: 503, body: { status: "not ready", checks: { store: "ok", custody: "offline" } } },
    });
    render(<App />);
    expect(await screen.findByTestId("error-banner")).toHaveTextContent("custody: offline");
  });

  it("says a view is not available on a server without its route (404)", async () => {
    fakeApi({ "GET /tokens/self": asRole("auditor"), "GET /dashboard": { body: dashboard() } });
    const { user } = await signedIn();
    await user.click(screen.getByTestId("nav-compliance"));
    expect(await screen.findByTestId("not-available")).toHaveTextContent(
      /not available on this server/,
    );
    expect(screen.queryByTestId("error-banner")).not.toBeInTheDocument();
  });

  it("does not ask for a view the role may not read", async () => {
    const api = fakeApi({ "GET /tokens/self": asRole("viewer"), "GET /dashboard": { body: dashboard() } });
    const { user } = await signedIn();
    await user.click(screen.getByTestId("nav-audit"));
    expect(screen.getByTestId("forbidden")).toHaveTextContent("(viewer) may not read");
    expect(api.callsTo("GET /audit/logs")).toHaveLength(0);
  });

  it("says when the service refuses a view (403) to a role it could not name", async () => {
    fakeApi({
      "GET /tokens": problem(403, "forbidden"),
      "GET /dashboard": { body: dashboard() },
      "GET /audit/logs": problem(403, "forbidden", "role viewer may not do this"),
      "GET /audit/verify": problem(403, "forbidden", "role viewer may not do this"),
    });
    const { user } = await signedIn();
    await user.click(screen.getByTestId("nav-audit"));
    await waitFor(() => expect(screen.getAllByTestId("forbidden")).toHaveLength(2));
  });
});
