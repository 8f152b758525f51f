// A headless Chromium for tests: loads a page the way a user's browser would
// and returns the DOM after its scripts have run.
//
// Works on Deno (Deno.Command), Node and Bun (node:child_process). Chromium
// runs in a process group of its own, with a fresh profile and its own TMPDIR
// in one temporary folder; a timeout kills the group by its ID, and the
// folder is removed afterwards, whatever happened (a killed Chromium leaves
// files in its TMPDIR).

import { spawn } from "node:child_process";
import { accessSync, constants, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";

/** Deno's API when this runs on Deno; undefined on Node and Bun. */
const deno: typeof Deno | undefined = (globalThis as { Deno?: typeof Deno }).Deno;

/** Where Debian and Ubuntu install Chromium. */
const CANDIDATES = ["/usr/bin/chromium", "/usr/bin/chromium-browser"];

/**
 * The path of an executable Chromium, or null when none is installed (tests
 * then skip, saying why).
 *
 * @returns The path, or null.
 */
export function chromiumPath(): string | null {
  for (const path of CANDIDATES) {
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // Not here: try the next place.
    }
  }
  return null;
}

/** Options for {@linkcode dumpDom}. */
export interface DumpDomOptions {
  /**
   * Milliseconds before Chromium is killed and the call rejects.
   *
   * @default {30_000}
   */
  timeoutMs?: number;
  /**
   * Chromium's `--virtual-time-budget`: how many milliseconds of page time
   * (timers, loads) may pass before the DOM is dumped. Without it the DOM is
   * dumped once the page's load event has run.
   */
  virtualTimeBudgetMs?: number;
  /** More Chromium switches, e.g. `--ignore-certificate-errors` for a test CA. */
  args?: string[];
}

/** How Chromium ended, and what it wrote. */
interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/**
 * Loads `url` in headless Chromium and returns the serialized DOM, as
 * `chromium --headless --dump-dom` prints it.
 *
 * @param url The page to load; tests use `http://127.0.0.1:<port>/…`.
 * @param options The time limits.
 * @returns The DOM as HTML.
 * @throws {Error} When Chromium is not installed, exits with an error (its
 * stderr is in the message), or does not finish within `timeoutMs`.
 */
export async function dumpDom(url: string, options: DumpDomOptions = {}): Promise<string> {
  const chromium = chromiumPath();
  if (chromium === null) throw new Error(`Chromium is not installed (looked for ${CANDIDATES})`);
  const timeoutMs = options.timeoutMs ?? 30_000;
  const root = mkdtempSync(join(tmpdir(), "brick-chromium-"));
  const profile = join(root, "profile");
  const tmp = join(root, "tmp");
  mkdirSync(profile);
  mkdirSync(tmp);
  const args = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    `--user-data-dir=${profile}`,
    ...(options.virtualTimeBudgetMs === undefined
      ? []
      : [`--virtual-time-budget=${options.virtualTimeBudgetMs}`]),
    ...(options.args ?? []),
    "--dump-dom",
    url,
  ];
  try {
    const env = { ...process.env, TMPDIR: tmp };
    const run = await (deno ? runWithDeno : runWithNode)(chromium, args, env, timeoutMs);
    if (run.timedOut) {
      throw new Error(
        `Chromium did not finish loading ${url} within ${timeoutMs} ms\n${tail(run.stderr)}`,
      );
    }
    if (run.code !== 0) {
      throw new Error(`Chromium exited with code ${run.code} for ${url}\n${tail(run.stderr)}`);
    }
    return run.stdout;
  } finally {
    rmSync(root, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  }
}

/** The last lines of Chromium's stderr, which holds its error messages among much noise. */
function tail(stderr: string): string {
  return stderr.trimEnd().split("\n").slice(-15).join("\n");
}

/** Kills a process group we started, by its ID; quiet when it is already gone. */
function killGroup(pid: number): void {
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // Gone already.
  }
}

/** The environment Chromium runs with. */
type Env = Record<string, string | undefined>;

async function runWithDeno(
  command: string,
  args: string[],
  env: Env,
  timeoutMs: number,
): Promise<Run> {
  const child = new deno!.Command(command, {
    args,
    env: Object.fromEntries(
      Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined),
    ),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    detached: true,
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(child.pid);
  }, timeoutMs);
  try {
    const [status, stdout, stderr] = await Promise.all([
      child.status,
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
    ]);
    return { code: status.code, stdout, stderr, timedOut };
  } finally {
    clearTimeout(timer);
    // Helpers that outlive the browser process would keep the group alive.
    killGroup(child.pid);
  }
}

function runWithNode(command: string, args: string[], env: Env, timeoutMs: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
      env,
    });
    let stdout = "";
    let stderr = "";
    child.stdout!.setEncoding("utf8").on("data", (text: string) => stdout += text);
    child.stderr!.setEncoding("utf8").on("data", (text: string) => stderr += text);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) killGroup(child.pid);
    }, timeoutMs);
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      if (child.pid !== undefined) killGroup(child.pid);
      resolve({ code, stdout, stderr, timedOut });
    });
  });
}
