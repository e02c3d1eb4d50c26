import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { App } from "../App";

/** Render the whole page and sign in with a token; resolves when the navigation shows. */
export async function signedIn(token = "qrc_test") {
  const user = userEvent.setup();
  const view = render(<App />);
  await user.click(screen.getByTestId("token-input"));
  await user.paste(token);
  await user.click(screen.getByTestId("sign-in"));
  await screen.findByTestId("sign-out");
  return { user, ...view };
}
