// node:test's `test` and `describe`, with one addition: the reason of every
// skip is written down, so that the summary of `deno task test`
// (scripts/test.ts) can say why a test skipped on every runtime. Deno's and
// Bun's JUnit reports keep that a test skipped but drop the reason, and Bun
// ignores `skip` on a describe block altogether.
//
// Import these instead of node:test's in a suite that skips:
//
//   import { describe, test } from "./_test_skips.ts";
//   test("serve() answers curl", { skip: curlSkip }, async () => {...});
//
// The reasons go to the file named by BRICK_TEST_SKIPS, one JSON line each:
// `{"name": "...", "reason": "..."}`. Without it, nothing is written.

import * as nodeTest from "node:test";
import { appendFileSync } from "node:fs";
import process from "node:process";

type TestFn = nodeTest.TestFn;
type SuiteFn = nodeTest.SuiteFn;
type Options = nodeTest.TestOptions;

const onBun = "Bun" in globalThis;

/** Writes down why `name` skips, for the test summary. */
export function recordSkip(name: string, reason: string | boolean | undefined): void {
  if (!reason) return;
  const file = process.env.BRICK_TEST_SKIPS;
  if (!file) return;
  const line = JSON.stringify({ name, reason: reason === true ? "" : reason });
  appendFileSync(file, line + "\n");
}

/** node:test's `test`, recording the reason when `options.skip` holds one. */
export function test(name: string, fn: TestFn): void;
export function test(name: string, options: Options, fn: TestFn): void;
export function test(name: string, optionsOrFn: Options | TestFn, maybeFn?: TestFn): void {
  const [options, fn] = typeof optionsOrFn === "function"
    ? [{}, optionsOrFn]
    : [optionsOrFn, maybeFn!];
  recordSkip(name, options.skip);
  nodeTest.test(name, options, fn);
}

/**
 * node:test's `describe`, recording the reason when `options.skip` holds one.
 * On Bun, which runs the tests of a skipped block anyway, a skipped block
 * declares one skipped test of its own name instead of its tests.
 */
export function describe(name: string, fn: SuiteFn): void;
export function describe(name: string, options: Options, fn: SuiteFn): void;
export function describe(name: string, optionsOrFn: Options | SuiteFn, maybeFn?: SuiteFn): void {
  const [options, fn] = typeof optionsOrFn === "function"
    ? [{}, optionsOrFn]
    : [optionsOrFn, maybeFn!];
  recordSkip(name, options.skip);
  if (options.skip && onBun) {
    nodeTest.test(name, { skip: options.skip }, () => {});
    return;
  }
  nodeTest.describe(name, options, fn);
}
