import { useCallback, useEffect, useRef, useState } from "react";
import { ApiError, notReady, setApiListener } from "./api/client";
import { keepToken, resolveRole, storedToken } from "./api/session";
import { mayRead, type Role, type ViewName } from "./api/types";
import { Algorithms } from "./views/Algorithms";
import { Audit } from "./views/Audit";
import { Compliance } from "./views/Compliance";
import { Events } from "./views/Events";
import { Inventory } from "./views/Inventory";
import { Keys } from "./views/Keys";
import { Overview } from "./views/Overview";
import { SignIn } from "./views/SignIn";
import { Tokens } from "./views/Tokens";

const VIEWS: readonly (readonly [ViewName, string])[] = [
  ["overview", "Overview"],
  ["keys", "Keys"],
  ["algorithms", "Algorithms & policy"],
  ["audit", "Audit log"],
  ["events", "Security events"],
  ["inventory", "Inventory"],
  ["compliance", "Compliance"],
  ["tokens", "Tokens"],
];
type View = ViewName;

const READY_POLL_MS = 15_000;

function initialView(): View {
  const name = globalThis.location?.hash.replace(/^#\/?/, "").split("?")[0] ?? "";
  return VIEWS.find(([id]) => id === name)?.[0] ?? "overview";
}

interface Session {
  role: Role | null;
}

export function App() {
  const [session, setSession] = useState<Session | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [view, setView] = useState<View>(initialView);
  const [outage, setOutage] = useState<string | null>(null);
  const [unready, setUnready] = useState<string | null>(null);
  const main = useRef<HTMLElement>(null);

  const signOut = useCallback((why: string | null) => {
    keepToken(null);
    setSession(null);
    setMessage(why);
  }, []);

  const signIn = useCallback(
    async (token: string) => {
      setBusy(true);
      keepToken(token);
      try {
        setSession({ role: await resolveRole() });
        setMessage(null);
      } catch (error) {
        keepToken(null);
        setMessage(
          error instanceof ApiError && error.kind === "unauthorized"
            ? "That token was not accepted (unknown, revoked or expired)."
            : `Could not sign in: ${error instanceof Error ? error.message : String(error)}`,
        );
      } finally {
        setBusy(false);
      }
    },
    [],
  );

  useEffect(() => {
    setApiListener({
      outage: setOutage,
      unauthorized: () => signOut("Your session ended: the token is no longer accepted."),
    });
    const saved = storedToken();
    if (saved) void signIn(saved);
    return () => setApiListener(null);
  }, [signIn, signOut]);

  useEffect(() => {
    let live = true;
    const check = () => void notReady().then((text) => live && setUnready(text));
    check();
    const timer = setInterval(check, READY_POLL_MS);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, []);

  // Each view has its address (#/keys), so Back and Forward move between views.
  useEffect(() => {
    const follow = () => setView(initialView());
    window.addEventListener("popstate", follow);
    window.addEventListener("hashchange", follow);
    return () => {
      window.removeEventListener("popstate", follow);
      window.removeEventListener("hashchange", follow);
    };
  }, []);

  function go(next: View) {
    setView(next);
    if (next !== view) history.pushState(null, "", `#/${next}`);
  }

  const problem = outage ?? unready;
  const banner = problem && (
    <div className="error-banner" role="alert" data-testid="error-banner">
      {problem}
    </div>
  );

  if (!session) {
    return (
      <>
        {banner}
        <SignIn message={message} busy={busy} onSubmit={(token) => void signIn(token)} />
      </>
    );
  }

  const role = session.role;
  return (
    <div className="shell">
      <header className="topbar">
        <button type="button" className="skip" onClick={() => main.current?.focus()}>
          Skip to content
        </button>
        <span className="brand">qrc</span>
        <span className="role" title="The role of the signed-in token">
          {role ? role.replace("_", " ") : "unknown role"}
        </span>
        <button type="button" data-testid="sign-out" onClick={() => signOut(null)}>
          Sign out
        </button>
      </header>
      <nav className="sidenav" aria-label="Views">
        {VIEWS.filter(([id]) => id !== "tokens" || role === "admin").map(([id, label]) => (
          <button
            key={id}
            type="button"
            data-testid={`nav-${id}`}
            aria-current={view === id ? "page" : undefined}
            onClick={() => go(id)}
          >
            {label}
          </button>
        ))}
      </nav>
      <main className="content" ref={main} tabIndex={-1}>
        {banner}
        {!mayRead(view, role) ? (
          <p className="notice" data-testid="forbidden">
            Your token&apos;s role ({role}) may not read this view.
          </p>
        ) : (
          <CurrentView view={view} role={role} />
        )}
      </main>
    </div>
  );
}

function CurrentView({ view, role }: { view: View; role: Role | null }) {
  return (
    <>
      {view === "overview" && <Overview />}
      {view === "keys" && <Keys role={role} canAudit={mayRead("audit", role)} />}
      {view === "algorithms" && <Algorithms role={role} />}
      {view === "audit" && <Audit />}
      {view === "events" && <Events />}
      {view === "inventory" && <Inventory />}
      {view === "compliance" && <Compliance />}
      {view === "tokens" && <Tokens />}
    </>
  );
}
