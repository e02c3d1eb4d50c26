import { useState } from "react";
import { ApiError, messageOf } from "../api/client";
import { download } from "../api/download";

interface Props {
  path: string;
  filename: string;
  label: string;
  testId?: string;
}

/** A button that downloads a file from the API, and says why when it cannot. */
export function DownloadButton({ path, filename, label, testId }: Props) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();

  async function run() {
    setBusy(true);
    setError(undefined);
    try {
      await download(path, filename);
    } catch (failure) {
      setError(
        failure instanceof ApiError && failure.kind === "not-found"
          ? "Not available on this server."
          : messageOf(failure),
      );
    } finally {
      setBusy(false);
    }
  }

  return (
    <span className="download">
      <button type="button" data-testid={testId} onClick={() => void run()} disabled={busy}>
        {busy ? "Downloading…" : label}
      </button>
      {error && (
        <span className="notice error" role="alert">
          {error}
        </span>
      )}
    </span>
  );
}
