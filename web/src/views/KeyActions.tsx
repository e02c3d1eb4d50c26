import { useState } from "react";
import { api, messageOf } from "../api/client";
import type { Key } from "../api/types";
import { ConfirmDialog } from "../components/ConfirmDialog";

type Action = "rotate" | "revoke" | "destroy" | "cancel" | "suspend" | "resume";
type Reason = "key_compromise" | "superseded" | "cessation_of_operation";

const FINAL = ["destroyed", "compromised"];
const SIMPLE = {
  cancel: { title: "Cancel the destruction of KEY?", label: "Cancel destruction" },
  suspend: { title: "Suspend KEY? It does nothing until resumed.", label: "Suspend" },
  resume: { title: "Resume KEY?", label: "Resume" },
} as const;

/** Rotate, revoke, schedule or cancel destruction: each only after a confirmation. */
export function KeyActions({ value, onChanged }: { value: Key; onChanged: () => void }) {
  const [action, setAction] = useState<Action | null>(null);
  const [reason, setReason] = useState<Reason>("superseded");
  const [days, setDays] = useState("7");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const path = { params: { path: { key: value.id } } };
  const pending = value.status === "pending_destruction";
  const final = FINAL.includes(value.status);

  async function run() {
    const delay = Number(days);
    if (action === "destroy" && !(Number.isInteger(delay) && delay >= 1)) {
      setError("The waiting period is a whole number of days, at least 1.");
      return;
    }
    setBusy(true);
    setError(undefined);
    try {
      if (action === "rotate") {
        await api.POST("/api/v1/security/qrc/keys/{key}/rotate", {
          ...path,
          body: { expected_version: value.version },
        });
      } else if (action === "revoke") {
        await api.POST("/api/v1/security/qrc/keys/{key}/revoke", { ...path, body: { reason } });
      } else if (action === "destroy") {
        await api.DELETE("/api/v1/security/qrc/keys/{key}", {
          params: { path: { key: value.id }, query: { days: delay } },
        });
      } else if (action === "cancel") {
        await api.POST("/api/v1/security/qrc/keys/{key}/cancel-destruction", path);
      } else if (action === "suspend") {
        await api.POST("/api/v1/security/qrc/keys/{key}/suspend", path);
      } else if (action === "resume") {
        await api.POST("/api/v1/security/qrc/keys/{key}/resume", path);
      }
      setAction(null);
      onChanged();
    } catch (failure) {
      setError(messageOf(failure));
    } finally {
      setBusy(false);
    }
  }

  function open(next: Action) {
    setError(undefined);
    setAction(next);
  }

  return (
    <div className="actions key-actions">
      <button type="button" data-testid="rotate-button" disabled={final || pending} onClick={() => open("rotate")}>
        Rotate
      </button>
      <button type="button" data-testid="revoke-button" disabled={final || pending} onClick={() => open("revoke")}>
        Revoke
      </button>
      {value.status === "suspended" ? (
        <button type="button" onClick={() => open("resume")}>
          Resume
        </button>
      ) : (
        <button type="button" disabled={value.status !== "active"} onClick={() => open("suspend")}>
          Suspend
        </button>
      )}
      {pending ? (
        <button type="button" onClick={() => open("cancel")}>
          Cancel destruction
        </button>
      ) : (
        <button
          type="button"
          className="danger"
          data-testid="destroy-button"
          disabled={value.status === "destroyed"}
          onClick={() => open("destroy")}
        >
          Schedule destruction
        </button>
      )}
      {action === "rotate" && (
        <ConfirmDialog
          title={`Rotate ${value.name}?`}
          confirmLabel="Rotate"
          busy={busy}
          error={error}
          onConfirm={() => void run()}
          onCancel={() => setAction(null)}
        >
          <p>
            Adds version {value.version + 1} and makes it primary. Older versions still decrypt
            and verify. If someone rotated it meanwhile, nothing happens and you are told.
          </p>
        </ConfirmDialog>
      )}
      {action === "revoke" && (
        <ConfirmDialog
          title={`Revoke ${value.name}?`}
          confirmLabel="Revoke"
          danger
          busy={busy}
          error={error}
          onConfirm={() => void run()}
          onCancel={() => setAction(null)}
        >
          <label>
            Reason
            <select value={reason} onChange={(e) => setReason(e.target.value as Reason)}>
              <option value="superseded">superseded (still decrypts existing data)</option>
              <option value="cessation_of_operation">cessation of operation</option>
              <option value="key_compromise">key compromise (stops all use)</option>
            </select>
          </label>
        </ConfirmDialog>
      )}
      {action === "destroy" && (
        <ConfirmDialog
          title={`Schedule destruction of ${value.name}?`}
          confirmLabel="Schedule destruction"
          danger
          busy={busy}
          error={error}
          onConfirm={() => void run()}
          onCancel={() => setAction(null)}
        >
          <p>
            When due, the key material is erased and data under it becomes unrecoverable. It
            can be cancelled until then.
          </p>
          <label>
            Days to wait
            <input
              type="number"
              min={1}
              max={3650}
              value={days}
              onChange={(e) => setDays(e.target.value)}
            />
          </label>
        </ConfirmDialog>
      )}
      {(action === "cancel" || action === "suspend" || action === "resume") && (
        <ConfirmDialog
          title={SIMPLE[action].title.replace("KEY", value.name)}
          confirmLabel={SIMPLE[action].label}
          busy={busy}
          error={error}
          onConfirm={() => void run()}
          onCancel={() => setAction(null)}
        />
      )}
    </div>
  );
}
