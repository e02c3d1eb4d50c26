import type { ReactNode } from "react";

/** A big number with its label under it. */
export function Stat(props: { label: string; value: ReactNode; tone?: string }) {
  return (
    <div className={`stat ${props.tone ?? ""}`}>
      <div className="stat-value">{props.value}</div>
      <div className="stat-label">{props.label}</div>
    </div>
  );
}
