import { useState } from "react";
import { api, messageOf, need } from "../api/client";
import { ConfirmDialog } from "../components/ConfirmDialog";
import { useLoad } from "../hooks/useLoad";

type Purpose = "encryption" | "signing" | "key_wrapping";
const FITS: Record<Purpose, readonly string[]> = {
  encryption: ["key_exchange", "encryption"],
  key_wrapping: ["key_exchange", "encryption"],
  signing: ["digital_signature"],
};

/** "New key": name, purpose, and an algorithm fit for it (or the policy's default). */
export function CreateKey({ onCreated }: { onCreated: (id: string) => void }) {
  const [open, setOpen] = useState(false);
  const [name, setName] = useState("");
  const [purpose, setPurpose] = useState<Purpose>("encryption");
  const [algorithm, setAlgorithm] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const algorithms = useLoad(
    async () =>
      open ? need(await api.GET("/api/v1/security/qrc/algorithms/status")).algorithms : [],
    [open],
  );
  const fit = (algorithms.data ?? []).filter(
    (a) => FITS[purpose].includes(a.type) && (a.status === "active" || a.status === "experimental"),
  );

  async function create() {
    if (!name.trim()) {
      setError("A key needs a name.");
      return;
    }
    setBusy(true);
    setError(undefined);
    try {
      const key = need(
        await api.POST("/api/v1/security/qrc/keys/generate", {
          body: { name: name.trim(), purpose, algorithm: algorithm || null },
        }),
      );
      setOpen(false);
      setName("");
      onCreated(key.id);
    } catch (failure) {
      setError(messageOf(failure));
    } finally {
      setBusy(false);
    }
  }

  return (
    <>
      <button type="button" className="primary" data-testid="create-key" onClick={() => setOpen(true)}>
        New key
      </button>
      {open && (
        <ConfirmDialog
          title="Create a key"
          confirmLabel="Create"
          focusFirst
          busy={busy}
          error={error}
          onConfirm={() => void create()}
          onCancel={() => setOpen(false)}
        >
          <div className="form">
            <label>
              Name
              <input
                data-testid="key-name-input"
                value={name}
                maxLength={200}
                onChange={(e) => setName(e.target.value)}
              />
            </label>
            <label>
              Purpose
              <select
                value={purpose}
                onChange={(e) => {
                  setPurpose(e.target.value as Purpose);
                  setAlgorithm("");
                }}
              >
                <option value="encryption">encryption</option>
                <option value="signing">signing</option>
                <option value="key_wrapping">key wrapping</option>
              </select>
            </label>
            <label>
              Algorithm
              <select value={algorithm} onChange={(e) => setAlgorithm(e.target.value)}>
                <option value="">the policy&apos;s default</option>
                {fit.map((a) => (
                  <option key={a.id} value={a.id}>
                    {a.id}
                    {a.status === "experimental" ? " (experimental)" : ""}
                  </option>
                ))}
              </select>
            </label>
          </div>
        </ConfirmDialog>
      )}
    </>
  );
}
