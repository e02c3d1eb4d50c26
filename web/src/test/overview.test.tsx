import { screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { dashboard, threat } from "./dashboard";
import { asRole, fakeApi, problem } from "./fakeApi";
import { signedIn } from "./render";

describe("overview", () => {
  it("shows the numbers of the dashboard payload", async () => {
    fakeApi({ "GET /tokens/self": asRole("viewer"), "GET /dashboard": { body: dashboard() } });
    await signedIn();
    expect(await screen.findByTestId("total-keys")).toHaveTextContent(/^42$/);
    expect(screen.getByText("Rotated (30 days)").previousSibling).toHaveTextContent("7");
    expect(screen.getByTestId("hsm-status")).toHaveTextContent("online");
    expect(screen.getByTestId("coverage")).toHaveTextContent("90%");
    expect(screen.getByTestId("classical-share")).toHaveTextContent("25.0%");
    expect(screen.getByTestId("expiring-certificates")).toHaveTextContent("CN=qrc");
    const table = screen.getByTestId("algorithm-status-table");
    expect(within(table).getByText("ML-KEM-768")).toBeInTheDocument();
    expect(within(table).getByText("disallowed")).toBeInTheDocument();
    expect(within(table).getByText("encaps 21,000")).toBeInTheDocument();
    const compliance = screen.getByTestId("compliance-summary");
    expect(within(compliance).getByText("31")).toBeInTheDocument();
    expect(screen.getByTestId("compliance-status")).toHaveTextContent("fail");
    expect(screen.getByText(/2 keys are overdue/)).toBeInTheDocument();
    // The part this server does not compute says so, with its reason.
    expect(screen.getByTestId("not-available")).toHaveTextContent(
      "qrc.monitor.risk is not in this build",
    );
  });

  it("shows the threat level when the server computes it", async () => {
    const body = dashboard({
      quantumThreatLevel: threat(),
      unavailable: [],
    });
    fakeApi({ "GET /tokens/self": asRole("admin"), "GET /dashboard": { body } });
    await signedIn();
    expect(await screen.findByTestId("threat-level")).toHaveTextContent("elevated");
    expect(screen.getByText("3 keys fail Mosca's inequality")).toBeInTheDocument();
  });

  it("says the dashboard is not available on a server without the route", async () => {
    fakeApi({ "GET /tokens/self": asRole("admin"), "GET /dashboard": problem(404, "not-found") });
    await signedIn();
    expect(await screen.findByTestId("not-available")).toHaveTextContent(
      /not available on this server/,
    );
  });
});
