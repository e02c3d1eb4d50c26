import { screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { dashboard } from "./dashboard";
import { asRole, fakeApi } from "./fakeApi";
import { signedIn } from "./render";

const TOKEN = { id: "c_c94321e0ff146702", name: "payments-svc", role: "crypto_user", keys: ["k_1"] };

describe("tokens", () => {
  it("is an admin's view only", async () => {
    fakeApi({ "GET /tokens/self": asRole("auditor"), "GET /dashboard": { body: dashboard() } });
    await signedIn();
    expect(screen.queryByTestId("nav-tokens")).not.toBeInTheDocument();
  });

  it("creates a token and shows its secret once, revokes after a confirmation", async () => {
    const api = fakeApi({
      "GET /tokens": { body: { tokens: [TOKEN] } },
      "GET /dashboard": { body: dashboard() },
      "POST /tokens": { status: 201, body: { ...TOKEN, id: "c_2", name: "ops", role: "viewer", keys: null, token: "qrc_shown_once" } },
      [`DELETE /tokens/${TOKEN.id}`]: { body: { ...TOKEN, revoked_at: "2026-12-07T12:00:00Z" } },
    });
    const { user } = await signedIn();
    await user.click(screen.getByTestId("nav-tokens"));
    const table = await screen.findByTestId("tokens-table");
    expect(within(table).getByText("payments-svc")).toBeInTheDocument();

    const form = screen.getByRole("form", { name: "New token" });
    await user.type(within(form).getByLabelText("Name"), "ops");
    await user.type(within(form).getByLabelText(/Expires after/), "30");
    await user.click(within(form).getByRole("button", { name: "Create token" }));
    expect(await screen.findByDisplayValue("qrc_shown_once")).toBeInTheDocument();
    expect(api.callsTo("POST /tokens")[0]?.body).toEqual({
      name: "ops",
      role: "viewer",
      keys: null,
      expires_in: 30 * 86_400,
    });

    await user.click(within(table).getByRole("button", { name: "Revoke" }));
    expect(api.callsTo(`DELETE /tokens/${TOKEN.id}`)).toHaveLength(0);
    await user.click(screen.getByTestId("confirm-button"));
    await waitFor(() => expect(api.callsTo(`DELETE /tokens/${TOKEN.id}`)).toHaveLength(1));
  });
});
