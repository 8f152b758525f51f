/**
 * `deno task test`: every check and test suite of brick, on Deno, on Node
 * (the npm build) and on Bun, then one summary: per runtime and suite, what
 * passed, failed and skipped, the name of each failure and the reason of each
 * skip. The last line is `N passed, N failed, N skipped` alone; the exit code
 * is 1 if anything failed.
 *
 * ```sh
 * deno task test                      # everything
 * deno task test --only deno          # the Deno suites (also: check, node, bun, fuzz, pack)
 * deno task test --only node,bun      # the npm build on Node and on Bun
 * deno task test --only deno,node mod_test websocket   # only the test files named so
 * ```
 *
 * Each test file runs in a process of its own, with a JUnit report
 * (`deno test --junit-path`, `node --test-reporter=junit`, `bun test
 * --reporter=junit`), so a crash is pinned on its file. Test files are found by
 * name (`*_test.ts`, and `*_test.js` in npm/), so a new suite runs without
 * being listed here. Deno and Bun drop the reason of a skip from their reports;
 * suites that skip import `test` and `describe` from `_test_skips.ts`, which
 * writes the reasons where this script reads them.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { type JUnitCase, parseJUnit, printSummary, type SuiteResult } from "./test_summary.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const NPM_DIR = join(ROOT, "npm");
/** The public conformance corpus, beside the project on the machines that have it. */
const CORPUS = join(ROOT, "..", "shared", "conformance");
const BUN = "bun@1.3.14";
/** Bun's own per-test default is 5 s, too short for a loaded machine; a test's own timeout wins. */
const BUN_TIMEOUT_MS = 60_000;
const GROUPS = ["check", "deno", "node", "fuzz", "bun", "pack"] as const;
type Group = typeof GROUPS[number];

/** Folders never searched for test files. */
const SKIP_DIRS = new Set(["npm", "node_modules", "coverage", ".git", "testdata"]);

/** Every file under `dir` whose name ends with `suffix`, relative to `dir`, sorted. */
export function findFiles(dir: string, suffix: string, skipDirs = SKIP_DIRS): string[] {
  const found: string[] = [];
  const walk = (at: string) => {
    for (const entry of readdirSync(at, { withFileTypes: true })) {
      const path = join(at, entry.name);
      if (entry.isDirectory()) {
        if (!skipDirs.has(entry.name) && !entry.name.startsWith(".")) walk(path);
      } else if (entry.name.endsWith(suffix)) {
        found.push(relative(dir, path));
      }
    }
  };
  walk(dir);
  return found.sort();
}

/** The modules whose doc examples `deno test --doc` runs: brick's own, not tests or scripts. */
function docModules(): string[] {
  return [
    ...findFiles(ROOT, ".ts", new Set([...SKIP_DIRS, "scripts", "examples"])).filter((file) =>
      !file.endsWith("_test.ts") && !file.split("/").pop()!.startsWith("_")
    ),
    "README.md",
  ];
}

/** Runs a command with its output on this terminal; resolves to its exit code. */
async function run(
  command: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<number> {
  const { code } = await new Deno.Command(command, {
    args,
    cwd: ROOT,
    env,
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  return code;
}

/** Where this run keeps its JUnit reports and skip reasons. */
const WORK = mkdtempSync(join(tmpdir(), "brick-test-"));
let reportCount = 0;

/** A fresh pair of paths for one suite's JUnit report and skip reasons. */
function reportPaths(): { junit: string; skips: string } {
  const n = reportCount++;
  return { junit: join(WORK, `${n}.xml`), skips: join(WORK, `${n}.skips.jsonl`) };
}

function readIfThere(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null;
  }
}

/** Reads the reasons `_test_skips.ts` wrote: test name → reason. */
function readSkipReasons(path: string): Map<string, string> {
  const reasons = new Map<string, string>();
  for (const line of (readIfThere(path) ?? "").split("\n")) {
    if (line.trim() === "") continue;
    const { name, reason } = JSON.parse(line);
    reasons.set(name, reason);
  }
  return reasons;
}

/** Runs one test file that writes a JUnit report, and reads what it says. */
async function runSuite(
  runtime: string,
  suite: string,
  command: (paths: { junit: string; skips: string }) => [string, string[]],
): Promise<SuiteResult> {
  const paths = reportPaths();
  const [bin, args] = command(paths);
  console.log(`\n── ${runtime} ${suite} ──`);
  const started = performance.now();
  const code = await run(bin, args, { BRICK_TEST_SKIPS: paths.skips });
  const ms = performance.now() - started;
  const xml = readIfThere(paths.junit);
  const cases: JUnitCase[] = xml === null ? [] : parseJUnit(xml);
  return { runtime, suite, cases, code, ms, skipReasons: readSkipReasons(paths.skips) };
}

/** Runs a step that reports nothing but its exit code, counted as one test. */
async function runStep(runtime: string, suite: string, command: string, args: string[]) {
  console.log(`\n── ${runtime} ${suite} ──`);
  if (suite === "conformance" && !existsDir(CORPUS)) {
    const reason = `no conformance corpus at ${CORPUS}`;
    console.log(`Skipped: ${reason}`);
    return {
      runtime,
      suite,
      cases: [{ name: suite, status: "skipped", message: reason }],
      code: 0,
      ms: 0,
      skipReasons: new Map(),
    } satisfies SuiteResult;
  }
  const started = performance.now();
  const code = await run(command, args);
  const ms = performance.now() - started;
  const cases: JUnitCase[] = [{
    name: suite,
    status: code === 0 ? "passed" : "failed",
    message: code === 0 ? "" : `exited with code ${code}`,
  }];
  return { runtime, suite, cases, code, ms, skipReasons: new Map() } satisfies SuiteResult;
}

/** The path of Bun's binary, installed from npm once. */
async function bunPath(): Promise<string> {
  const { stdout, success } = await new Deno.Command("npx", {
    args: ["-y", BUN, "-e", "console.log(process.execPath)"],
    stdin: "null",
    stderr: "inherit",
  }).output();
  if (!success) throw new Error(`Cannot install ${BUN} from npm: see the error above`);
  return new TextDecoder().decode(stdout).trim();
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    options: { only: { type: "string" } },
    allowPositionals: true,
  });
  /** Test files whose path contains one of the positional arguments, or every one. */
  const picked = (file: string) =>
    positionals.length === 0 || positionals.some((name) => file.includes(name));
  const only = values.only?.split(",") ?? [...GROUPS];
  const unknown = only.filter((group) => !(GROUPS as readonly string[]).includes(group));
  if (unknown.length > 0) {
    console.error(`Unknown group "${unknown.join(", ")}": choose from ${GROUPS.join(", ")}`);
    return 2;
  }
  const wants = (group: Group) => only.includes(group);
  const deno = Deno.execPath();
  const results: SuiteResult[] = [];
  const started = performance.now();

  if (wants("check")) {
    results.push(
      await runStep("Deno", "check (fmt, lint, types, docs, publish)", deno, [
        "task",
        "check",
      ]),
    );
  }
  // The build comes first: some Deno suites drive the npm build too (the
  // bench's Node servers), and would skip on a fresh clone without it.
  const needsBuild = wants("node") || wants("bun") || wants("pack");
  let built = false;
  if (needsBuild) {
    const build = await runStep("Deno", "npm build", deno, ["task", "build:npm"]);
    results.push(build);
    built = build.code === 0;
  }
  if (wants("deno")) {
    // One type check of every test file together, rather than one per process.
    const files = findFiles(ROOT, "_test.ts").filter(picked);
    const typeCheck = await runStep("Deno", "type check of the test files", deno, [
      "check",
      ...files,
    ]);
    results.push(typeCheck);
    for (const file of files) {
      results.push(
        await runSuite("Deno", file, ({ junit }) => [deno, [
          "test",
          "--allow-all",
          ...(typeCheck.code === 0 ? ["--no-check"] : []),
          `--junit-path=${junit}`,
          file,
        ]]),
      );
    }
    results.push(
      await runSuite("Deno", "doc examples", ({ junit }) => [deno, [
        "test",
        "--allow-all",
        "--doc",
        `--junit-path=${junit}`,
        ...docModules(),
      ]]),
    );
    results.push(await runStep("Deno", "conformance", deno, ["task", "conformance"]));
  }
  const npmSuites = built ? findFiles(NPM_DIR, "_test.js").filter(picked) : [];
  if (wants("node") && built) {
    for (const file of npmSuites) {
      results.push(
        await runSuite("Node", file, ({ junit }) => ["node", [
          "--test",
          "--test-reporter=spec",
          "--test-reporter-destination=stdout",
          "--test-reporter=junit",
          `--test-reporter-destination=${junit}`,
          join("npm", file),
        ]]),
      );
    }
    results.push(await runStep("Node", "conformance", deno, ["task", "conformance", "--node"]));
  }
  if (wants("fuzz")) {
    results.push(await runStep("Deno", "fuzz (seed 1)", deno, ["task", "fuzz", "--seed", "1"]));
    if (built || existsDir(NPM_DIR)) {
      results.push(
        await runStep("Node", "fuzz (seed 2)", deno, [
          "task",
          "fuzz",
          "--runtime",
          "node",
          "--seed",
          "2",
        ]),
      );
    }
  }
  if (wants("bun") && built) {
    const bun = await bunPath();
    for (const file of npmSuites) {
      results.push(
        await runSuite("Bun", file, ({ junit }) => [bun, [
          "test",
          `--timeout=${BUN_TIMEOUT_MS}`,
          "--reporter=junit",
          `--reporter-outfile=${junit}`,
          "./" + join("npm", file),
        ]]),
      );
    }
  }
  if (wants("pack") && built) {
    results.push(await runStep("Node", "npm pack", deno, ["task", "test:pack", "--no-build"]));
  }

  rmSync(WORK, { recursive: true, force: true });
  const { failed } = printSummary(results, performance.now() - started);
  return failed > 0 ? 1 : 0;
}

function existsDir(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

if (import.meta.main) Deno.exit(await main());
