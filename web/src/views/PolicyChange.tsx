import { useState, type FormEvent } from "react";
import { api, messageOf, need } from "../api/client";
import type { AlgorithmStatus, ProtocolPlan } from "../api/types";
import { ConfirmDialog } from "../components/ConfirmDialog";

type Status = "active" | "experimental" | "deprecated" | "disallowed";
const STATUSES: Status[] = ["active", "experimental", "deprecated", "disallowed"];

interface Props {
  algorithms: AlgorithmStatus[];
  onApplied: () => void;
}

/**
 * Change an algorithm's status (admins). The service first answers a dry run (what changes,
 * which keys are affected and what to do with them); only a confirmation applies it.
 */
export function PolicyChange({ algorithms, onApplied }: Props) {
  const [algorithm, setAlgorithm] = useState(algorithms[0]?.id ?? "");
  const [status, setStatus] = useState<Status>("deprecated");
  const [plan, setPlan] = useState<ProtocolPlan>();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const [done, setDone] = useState<string>();

  async function send(dryRun: boolean): Promise<ProtocolPlan> {
    return need(
      await api.POST("/api/v1/security/qrc/protocols/update", {
        body: { algorithm_status: { [algorithm]: status }, dry_run: dryRun },
      }),
    );
  }

  async function preview(event: FormEvent) {
    event.preventDefault();
    setError(undefined);
    setDone(undefined);
    try {
      setPlan(await send(true));
    } catch (failure) {
      setError(messageOf(failure));
    }
  }

  async function apply() {
    setBusy(true);
    setError(undefined);
    try {
      const applied = await send(false);
      setPlan(undefined);
      setDone(applied.changes.join("; ") || "nothing to change");
      onApplied();
    } catch (failure) {
      setError(messageOf(failure));
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="filters" onSubmit={(e) => void preview(e)} aria-label="Change an algorithm's status">
      <label>
        Algorithm
        <select value={algorithm} onChange={(e) => setAlgorithm(e.target.value)}>
          {algorithms.map((a) => (
            <option key={a.id} value={a.id}>
              {a.id} ({a.status})
            </option>
          ))}
        </select>
      </label>
      <label>
        New status
        <select value={status} onChange={(e) => setStatus(e.target.value as Status)}>
          {STATUSES.map((s) => (
            <option key={s}>{s}</option>
          ))}
        </select>
      </label>
      <button type="submit">Preview change</button>
      {done && (
        <p className="notice" role="status">
          Applied: {done}
        </p>
      )}
      {error && !plan && (
        <p className="notice error" role="alert">
          {error}
        </p>
      )}
      {plan && (
        <ConfirmDialog
          title={`Make ${algorithm} ${status}?`}
          confirmLabel="Apply policy"
          danger={status === "deprecated" || status === "disallowed"}
          busy={busy}
          error={error}
          onConfirm={() => void apply()}
          onCancel={() => setPlan(undefined)}
        >
          <p>{plan.changes.length ? plan.changes.join("; ") : "No change: the policy already says so."}</p>
          {plan.affected_keys.length > 0 && (
            <>
              <p>{plan.affected_keys.length} keys are affected:</p>
              <ul data-testid="affected-keys">
                {plan.affected_keys.slice(0, 20).map((k) => (
                  <li key={k.id}>
                    <strong>{k.name}</strong> ({k.algorithm}, {k.status}): {k.action}
                  </li>
                ))}
              </ul>
              {plan.affected_keys.length > 20 && <p>…and {plan.affected_keys.length - 20} more.</p>}
            </>
          )}
        </ConfirmDialog>
      )}
    </form>
  );
}
