// Regenerate the typed API client: export the service's OpenAPI document (no server needed),
// then turn it into TypeScript types (src/api/schema.d.ts, committed so a build needs no Python).
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const web = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const venvPython = resolve(web, "../.venv/bin/python");
const python = existsSync(venvPython) ? venvPython : "python3";
const run = (cmd, args) => execFileSync(cmd, args, { cwd: web, stdio: "inherit" });

run(python, ["../scripts/export_openapi.py", "openapi.json"]);
run(resolve(web, "node_modules/.bin/openapi-typescript"), ["openapi.json", "--default-non-nullable", "false", "-o", "src/api/schema.d.ts"]);
