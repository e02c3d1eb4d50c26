import { render, screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import { App } from "../App";
import { asRole, asRoleWithoutSelf, fakeApi, problem } from "./fakeApi";
import { signedIn } from "./render";

const DASHBOARD_403 = problem(403, "forbidden", "role crypto_user may not do this");

describe("sign-in", () => {
  it("signs in with a typed token, sends it as a bearer token, keeps it out of the URL", async () => {
    const api = fakeApi({ "GET /tokens/self": asRole("admin"), "GET /dashboard": DASHBOARD_403 });
    await signedIn("qrc_secret");
    const call = api.calls.find((c) => c.path === "/tokens/self");
    expect(call).toBeDefined();
    const fetched = (globalThis.fetch as unknown as { mock: { calls: [Request][] } }).mock.calls;
    const sent = fetched.map(([r]) => r).find((r) => r.url.endsWith("/tokens/self"));
    expect(sent?.headers.get("Authorization")).toBe("Bearer qrc_secret");
    expect(window.location.href).not.toContain("qrc_secret");
    expect(sessionStorage.getItem("qrc.token")).toBe("qrc_secret");
    expect(localStorage.length).toBe(0);
    expect(screen.getByText("admin")).toBeInTheDocument();
  });

  it("names the role the service gives for the token", async () => {
    fakeApi({ "GET /tokens/self": asRole("key_manager"), "GET /dashboard": DASHBOARD_403 });
    await signedIn();
    expect(screen.getByText("key manager")).toBeInTheDocument();
  });

  it("with a service that has no /tokens/self, names the role from the 403 of /tokens", async () => {
    fakeApi({ "GET /tokens": asRoleWithoutSelf("auditor"), "GET /dashboard": DASHBOARD_403 });
    await signedIn();
    expect(screen.getByText("auditor")).toBeInTheDocument();
  });

  it("refuses a token the service does not accept", async () => {
    fakeApi({ "GET /tokens/self": problem(401, "unauthorized") });
    const user = userEvent.setup();
    render(<App />);
    await user.type(screen.getByTestId("token-input"), "qrc_wrong");
    await user.click(screen.getByTestId("sign-in"));
    expect(await screen.findByRole("alert")).toHaveTextContent(/not accepted/);
    expect(screen.queryByTestId("sign-out")).not.toBeInTheDocument();
    expect(sessionStorage.getItem("qrc.token")).toBeNull();
  });

  it("sign-out forgets the token", async () => {
    fakeApi({ "GET /tokens/self": asRole("viewer"), "GET /dashboard": DASHBOARD_403 });
    const { user } = await signedIn();
    await user.click(screen.getByTestId("sign-out"));
    expect(screen.getByTestId("token-input")).toBeInTheDocument();
    expect(sessionStorage.getItem("qrc.token")).toBeNull();
  });

  it("returns to sign-in with a message when a call answers 401", async () => {
    const api = fakeApi({ "GET /tokens/self": asRole("auditor"), "GET /dashboard": DASHBOARD_403 });
    const { user } = await signedIn();
    api.on("GET /audit/logs", problem(401, "unauthorized"));
    api.on("GET /audit/verify", problem(401, "unauthorized"));
    await user.click(screen.getByTestId("nav-audit"));
    expect(await screen.findByTestId("token-input")).toBeInTheDocument();
    expect(screen.getByRole("alert")).toHaveTextContent(/session ended/);
    expect(sessionStorage.getItem("qrc.token")).toBeNull();
  });

  it("resumes the session of this tab after a reload", async () => {
    fakeApi({ "GET /tokens/self": asRole("viewer"), "GET /dashboard": DASHBOARD_403 });
    sessionStorage.setItem("qrc.token", "qrc_kept");
    render(<App />);
    await waitFor(() => expect(screen.getByTestId("sign-out")).toBeInTheDocument());
  });

  it("gives each view an address, so Back returns to the previous view", async () => {
    fakeApi({
      "GET /tokens/self": asRole("viewer"),
      "GET /dashboard": DASHBOARD_403,
      "GET /keys": { body: { keys: [] } },
    });
    const { user } = await signedIn();
    await user.click(screen.getByTestId("nav-keys"));
    expect(window.location.hash).toBe("#/keys");
    expect(screen.getByRole("heading", { level: 1 })).toHaveTextContent("Keys");
    history.back();
    await waitFor(() =>
      expect(screen.getByTestId("nav-overview")).toHaveAttribute("aria-current", "page"),
    );
  });
});
