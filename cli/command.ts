/**
 * How brick is started: the command that usage lines, help and hints print,
 * the entry module that worker threads and processes run, and whether a
 * module is the one the user ran.
 *
 * @module
 */

import { realpathSync } from "node:fs";
import { extname } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

/** Deno's API where this runs on Deno; undefined on Node and Bun. */
const deno: typeof Deno | undefined = (globalThis as { Deno?: typeof Deno }).Deno;

/** The Deno flags that serving files needs. */
export const READ_FILES = ["--allow-net", "--allow-read"];

/**
 * How this runtime starts brick, for the usage line and for hints: the
 * command that was actually used, as far as brick can tell. On Deno it names
 * the permissions and flags given, such as `["--allow-net"]`, after
 * `deno run`, or after `npx -y deno@<version> run` when this Deno is the npm
 * package's binary, as `npx -y deno@…` installs it. On Node and Bun it is the
 * npm package's `brick` command, through `npx --no --` when npx started it:
 * `--no` keeps npx from fetching the registry's unrelated `brick` package
 * where brickhttp is not installed, and after `--` the flags are brick's.
 */
export function brickCommand(denoFlags: string[]): string {
  if (deno) return [denoRun(), ...denoFlags, "main.ts"].join(" ");
  return process.env.npm_command === "exec" ? "npx --no -- brick" : "brick";
}

/** `npx -y deno@<version> run` when this Deno came from npm, else `deno run`. */
function denoRun(): string {
  try {
    const path = deno!.execPath().replaceAll("\\", "/");
    if (path.includes("/node_modules/deno/")) return `npx -y deno@${deno!.version.deno} run`;
  } catch {
    // Not allowed to know: the usual command.
  }
  return "deno run";
}

/** Quotes an argument for a POSIX shell when it needs it. */
export function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

/**
 * The URL of `main.ts` (`main.js` in the npm build), the module users run:
 * each worker, a thread on Deno or a process on Node and Bun, runs it too.
 */
export const MAIN_URL: string =
  new URL(`../main${extname(new URL(import.meta.url).pathname)}`, import.meta.url).href;

/**
 * Whether the module with this `import.meta` is the program's entry point.
 * Deno, Bun and newer Node versions say so in `import.meta.main`; on older
 * Node it is the script named in `process.argv[1]`, which for the npm package
 * is the `brick` symlink (or a shim naming the real file), so both paths are
 * resolved before comparing.
 *
 * @param meta The `import.meta` of the module that asks.
 */
export function isEntryPoint(meta: ImportMeta): boolean {
  const { main } = meta as { main?: boolean };
  if (typeof main === "boolean") return main;
  const script = process.argv[1];
  if (!script) return false;
  try {
    const self = realpathSync(fileURLToPath(meta.url));
    for (const candidate of [script, `${script}.js`]) {
      try {
        if (realpathSync(candidate) === self) return true;
      } catch {
        // No such file: try the next spelling.
      }
    }
  } catch {
    // Not a file URL: not started as a script.
  }
  return false;
}
