import { useState, type FormEvent } from "react";
import { api, messageOf, need } from "../api/client";
import { ROLES, type Role } from "../api/types";
import { ConfirmDialog } from "../components/ConfirmDialog";
import { LoadState } from "../components/LoadState";
import { useLoad } from "../hooks/useLoad";

interface Revoking {
  id: string;
  name: string;
}

/** API tokens (admins): list, create (the secret is shown once), revoke. */
export function Tokens() {
  const tokens = useLoad(async () => need(await api.GET("/api/v1/security/qrc/tokens")).tokens, []);
  const [revoking, setRevoking] = useState<Revoking | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();

  async function revoke() {
    if (!revoking) return;
    setBusy(true);
    setError(undefined);
    try {
      await api.DELETE("/api/v1/security/qrc/tokens/{token_id}", {
        params: { path: { token_id: revoking.id } },
      });
      setRevoking(null);
      tokens.reload();
    } catch (failure) {
      setError(messageOf(failure));
    } finally {
      setBusy(false);
    }
  }

  return (
    <section aria-labelledby="tokens-title">
      <h1 id="tokens-title">API tokens</h1>
      <NewToken onCreated={tokens.reload} />
      <LoadState error={tokens.error} loading={tokens.loading && !tokens.data} what="the tokens" />
      {tokens.data && (
        <div className="table-wrap">
          <table data-testid="tokens-table">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">ID</th>
                <th scope="col">Role</th>
                <th scope="col">Keys</th>
                <th scope="col">Expires</th>
                <th scope="col">State</th>
                <th scope="col">
                  <span className="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {tokens.data.map((t) => (
                <tr key={t.id}>
                  <td className="wrap">{t.name}</td>
                  <td className="mono">{t.id}</td>
                  <td>{t.role}</td>
                  <td className="wrap mono">{t.keys?.join(", ") ?? "all"}</td>
                  <td>{t.expires_at ? new Date(t.expires_at).toLocaleString() : "never"}</td>
                  <td>{t.revoked_at ? <span className="badge status-deactivated">revoked</span> : "valid"}</td>
                  <td>
                    {!t.revoked_at && (
                      <button type="button" onClick={() => setRevoking({ id: t.id, name: t.name })}>
                        Revoke
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {revoking && (
        <ConfirmDialog
          title={`Revoke the token ${revoking.name}?`}
          confirmLabel="Revoke"
          danger
          busy={busy}
          error={error}
          onConfirm={() => void revoke()}
          onCancel={() => setRevoking(null)}
        >
          <p>Every request with it is refused from now on. This cannot be undone.</p>
        </ConfirmDialog>
      )}
    </section>
  );
}

/** Create a token; its secret is in this answer only, so it is shown once, here. */
function NewToken({ onCreated }: { onCreated: () => void }) {
  const [name, setName] = useState("");
  const [role, setRole] = useState<Role>("viewer");
  const [keys, setKeys] = useState("");
  const [days, setDays] = useState("");
  const [secret, setSecret] = useState<string>();
  const [error, setError] = useState<string>();

  async function create(event: FormEvent) {
    event.preventDefault();
    setError(undefined);
    setSecret(undefined);
    const lifetime = days ? Math.round(Number(days) * 86_400) : null;
    const listed = keys.split(",").map((k) => k.trim()).filter(Boolean);
    try {
      const made = need(
        await api.POST("/api/v1/security/qrc/tokens", {
          body: {
            name: name.trim(),
            role,
            keys: role === "crypto_user" && listed.length ? listed : null,
            expires_in: lifetime,
          },
        }),
      );
      setSecret(made.token);
      setName("");
      onCreated();
    } catch (failure) {
      setError(messageOf(failure));
    }
  }

  return (
    <form className="panel filters" onSubmit={(e) => void create(e)} aria-label="New token">
      <label>
        Name
        <input value={name} onChange={(e) => setName(e.target.value)} maxLength={175} required />
      </label>
      <label>
        Role
        <select value={role} onChange={(e) => setRole(e.target.value as Role)}>
          {ROLES.map((r) => (
            <option key={r} value={r}>
              {r.replace("_", " ")}
            </option>
          ))}
        </select>
      </label>
      {role === "crypto_user" && (
        <label>
          Only these keys (IDs or names, comma-separated)
          <input value={keys} onChange={(e) => setKeys(e.target.value)} />
        </label>
      )}
      <label>
        Expires after (days, empty: never)
        <input type="number" min={1} value={days} onChange={(e) => setDays(e.target.value)} />
      </label>
      <button type="submit" className="primary">
        Create token
      </button>
      {error && (
        <p className="notice error" role="alert">
          {error}
        </p>
      )}
      {secret && (
        <div className="notice" role="status">
          <label>
            The new token, shown once: store it now
            <input className="mono" readOnly value={secret} onFocus={(e) => e.target.select()} />
          </label>
        </div>
      )}
    </form>
  );
}
