import { getRaw } from "./client";

/**
 * Fetch `path` (under the API base) with the session's token and save it as `filename`.
 * A plain link cannot carry the bearer token, so the file comes through fetch and a blob URL.
 */
export async function download(path: string, filename: string): Promise<void> {
  const response = await getRaw(path);
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  try {
    const link = document.createElement("a");
    link.href = url;
    link.download = filename;
    document.body.append(link);
    link.click();
    link.remove();
  } finally {
    setTimeout(() => URL.revokeObjectURL(url), 1_000);
  }
}
