/**
 * Reads the JUnit reports of `deno test`, `node --test` and `bun test` into
 * one shape, and prints the summary that ends `deno task test`
 * (scripts/test.ts).
 *
 * @module
 */

/** One test as a JUnit report gives it. */
export interface JUnitCase {
  /** The test's name after the names of the blocks around it, joined with " > ". */
  name: string;
  status: "passed" | "failed" | "skipped";
  /** The failure message or skip reason, when the report has one. */
  message: string;
}

/** What one suite (a test file on one runtime, or one step) came to. */
export interface SuiteResult {
  runtime: string;
  suite: string;
  cases: JUnitCase[];
  /** The exit code of its process. */
  code: number;
  ms: number;
  /** Skip reasons written by `_test_skips.ts`: test name → reason. */
  skipReasons: Map<string, string>;
}

const ENTITIES: Record<string, string> = {
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
};

function unescapeXml(text: string): string {
  return text.replace(/&(#x[0-9a-fA-F]+|#\d+|\w+);/g, (whole, entity: string) => {
    if (entity.startsWith("#x")) return String.fromCodePoint(parseInt(entity.slice(2), 16));
    if (entity.startsWith("#")) return String.fromCodePoint(parseInt(entity.slice(1), 10));
    return ENTITIES[entity] ?? whole;
  });
}

function attributes(text: string): Record<string, string> {
  const attrs: Record<string, string> = {};
  for (const [, name, value] of text.matchAll(/([\w:-]+)="([^"]*)"/g)) {
    attrs[name] = unescapeXml(value);
  }
  return attrs;
}

/** A testsuite named for a file (Deno, Bun) rather than for a describe block. */
const FILE_SUITE = /^(\.\/|ext:)|\.(ts|js|mjs|md)$/;

/**
 * The leaf tests of a JUnit report from Deno, Node or Bun. Suites named for a
 * file are left out of the names; so are the tests that only group steps
 * (Deno reports a describe block as a test whose steps are tests too).
 */
export function parseJUnit(xml: string): JUnitCase[] {
  const cases: JUnitCase[] = [];
  const suites: string[] = [];
  let current: JUnitCase | null = null;
  const tags = /<(\/?)(testsuite|testcase|skipped|failure|error)\b((?:[^>"]|"[^"]*")*?)(\/?)>/g;
  for (const [, closing, tag, attrText, selfClosing] of xml.matchAll(tags)) {
    const attrs = attributes(attrText);
    if (tag === "testsuite") {
      if (closing) suites.pop();
      else if (!selfClosing) suites.push(FILE_SUITE.test(attrs.name ?? "") ? "" : attrs.name);
    } else if (tag === "testcase") {
      if (closing) {
        if (current) cases.push(current);
        current = null;
        continue;
      }
      const name = [...suites.filter((s) => s), attrs.name ?? ""].join(" > ");
      current = { name, status: "passed", message: "" };
      if (selfClosing) {
        cases.push(current);
        current = null;
      }
    } else if (current && !closing) {
      const failed = tag !== "skipped";
      if (failed || current.status !== "failed") {
        current.status = failed ? "failed" : "skipped";
        current.message = attrs.message ?? attrs.type ?? "";
      }
    }
  }
  const names = cases.map((c) => c.name);
  return cases.filter((c) => !names.some((other) => other.startsWith(c.name + " > ")));
}

/**
 * Why `testCase` skipped: the report's reason, else the one `_test_skips.ts`
 * wrote, else the reason another runtime's report gave the same test
 * (`elsewhere`: Node keeps reasons), else a note that none was given.
 */
export function skipReason(
  result: SuiteResult,
  testCase: JUnitCase,
  elsewhere: Map<string, string> = new Map(),
): string {
  const fromReport = testCase.message.trim();
  if (fromReport !== "" && fromReport !== "true") return fromReport;
  for (const [name, reason] of result.skipReasons) {
    if ((testCase.name === name || testCase.name.endsWith(" > " + name)) && reason) return reason;
  }
  return elsewhere.get(testCase.name) ?? "no reason given (import test from _test_skips.ts)";
}

/** Skip reasons that reports gave, by test name, from every runtime. */
function reportedReasons(results: SuiteResult[]): Map<string, string> {
  const reasons = new Map<string, string>();
  for (const result of results) {
    for (const c of result.cases) {
      const reason = c.message.trim();
      if (c.status === "skipped" && reason !== "" && reason !== "true") reasons.set(c.name, reason);
    }
  }
  return reasons;
}

/** What `result` counts: its tests, plus one failure when its process failed with none named. */
export function tally(
  result: SuiteResult,
): { passed: number; failed: JUnitCase[]; skipped: JUnitCase[] } {
  const failed = result.cases.filter((c) => c.status === "failed");
  if (result.code !== 0 && failed.length === 0) {
    failed.push({
      name: "(the run itself)",
      status: "failed",
      message: result.cases.length === 0
        ? `exited with code ${result.code} and reported no test`
        : `exited with code ${result.code}`,
    });
  }
  return {
    passed: result.cases.filter((c) => c.status === "passed").length,
    failed,
    skipped: result.cases.filter((c) => c.status === "skipped"),
  };
}

const firstLine = (text: string, max = 160) => {
  const line = text.split("\n").find((l) => l.trim() !== "")?.trim() ?? "";
  return line.length > max ? line.slice(0, max - 1) + "…" : line;
};

/** Prints the summary, and returns the totals it ends with. */
export function printSummary(
  results: SuiteResult[],
  ms: number,
  log: (line: string) => void = console.log,
): { passed: number; failed: number; skipped: number } {
  let passed = 0, failed = 0, skipped = 0;
  const failures: string[] = [];
  const skips: string[] = [];
  const width = Math.max(...results.map((r) => r.suite.length), 10);
  const elsewhere = reportedReasons(results);
  log("");
  log(`── Summary (${(ms / 1000).toFixed(0)} s) ──`);
  for (const result of results) {
    const counts = tally(result);
    passed += counts.passed;
    failed += counts.failed.length;
    skipped += counts.skipped.length;
    const where = `${result.runtime.padEnd(4)}  ${result.suite.padEnd(width)}`;
    log(
      `${where}  ${counts.passed} passed, ${counts.failed.length} failed` +
        (counts.skipped.length > 0 ? `, ${counts.skipped.length} skipped` : "") +
        `  (${(result.ms / 1000).toFixed(0)} s)`,
    );
    for (const c of counts.failed) {
      failures.push(`  ${result.runtime} ${result.suite}: ${c.name}: ${firstLine(c.message)}`);
    }
    for (const c of counts.skipped) {
      skips.push(
        `  ${result.runtime} ${result.suite}: ${c.name}: ${skipReason(result, c, elsewhere)}`,
      );
    }
  }
  if (skips.length > 0) log("Skipped:");
  skips.forEach((line) => log(line));
  if (failures.length > 0) log("Failed:");
  failures.forEach((line) => log(line));
  log(`${passed} passed, ${failed} failed` + (skipped > 0 ? `, ${skipped} skipped` : ""));
  return { passed, failed, skipped };
}
