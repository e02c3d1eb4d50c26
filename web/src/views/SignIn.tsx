import { useState, type FormEvent } from "react";

interface Props {
  message: string | null;
  busy: boolean;
  onSubmit: (token: string) => void;
}

/** The token form. The token stays in this tab (session storage), never in the URL. */
export function SignIn({ message, busy, onSubmit }: Props) {
  const [token, setToken] = useState("");

  function submit(event: FormEvent) {
    event.preventDefault();
    const value = token.trim();
    if (value) onSubmit(value);
  }

  return (
    <main className="signin">
      <form onSubmit={submit} aria-labelledby="signin-title">
        <h1 id="signin-title">qrc key service</h1>
        <p className="muted">
          Sign in with an API token (<code>qrc_…</code>). The bootstrap admin token is in{" "}
          <code>DATA_DIR/admin.token</code>.
        </p>
        {message && (
          <p className="notice error" role="alert">
            {message}
          </p>
        )}
        <label htmlFor="token">Token</label>
        <input
          id="token"
          data-testid="token-input"
          type="password"
          autoComplete="off"
          spellCheck={false}
          value={token}
          onChange={(event) => setToken(event.target.value)}
          required
        />
        <button type="submit" className="primary" data-testid="sign-in" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
