// Tests of the test summary (test_summary.ts) on JUnit reports as Deno 2.9,
// Node 20 and Bun 1.3 write them for the same suite: a describe block with a
// passing, a skipped and a failing test and a skipped block, then a top-level
// test. Deno and Bun drop the skip reasons; _test_skips.ts wrote them down.

import { test } from "node:test";
import assert from "node:assert/strict";
import { parseJUnit, printSummary, skipReason, type SuiteResult } from "./test_summary.ts";

const DENO = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="deno test" tests="6" failures="2" errors="0" time="0.023">
    <testsuite name="./_test_skips.ts" tests="2" disabled="0" errors="0" failures="1">
        <testcase name="outer" classname="./_test_skips.ts" time="0.010" line="61" col="12">
            <failure message="1 test step failed">1 test step failed.</failure>
        </testcase>
        <testcase name="top" classname="./_test_skips.ts" time="0.001" line="42" col="12">
        </testcase>
    </testsuite>
    <testsuite name="ext:deno_node/testing.ts" tests="4" disabled="2" errors="0" failures="1">
        <testcase name="outer &gt; inner ok" classname="ext:deno_node/testing.ts" time="0.001">
        </testcase>
        <testcase name="outer &gt; inner skip" classname="ext:deno_node/testing.ts" time="0.000">
            <skipped/>
        </testcase>
        <testcase name="outer &gt; inner fail" classname="ext:deno_node/testing.ts" time="0.002">
            <failure message="Uncaught Error: x &lt; y">Error: x &lt; y
    at NodeTestContext.&lt;anonymous&gt; (file:///tmp/tt/w_test.ts:5:36)</failure>
        </testcase>
        <testcase name="outer &gt; deeper" classname="ext:deno_node/testing.ts" time="0.000">
            <skipped/>
        </testcase>
    </testsuite>
</testsuites>`;

const NODE = `<?xml version="1.0" encoding="utf-8"?>
<testsuites>
	<testsuite name="outer" time="0.003039" disabled="0" errors="0" tests="4" failures="1" skipped="2">
		<testcase name="inner ok" time="0.000898" classname="test"/>
		<testcase name="inner skip" time="0.000153" classname="test">
			<skipped type="skipped" message="curl is not installed"/>
		</testcase>
		<testcase name="inner fail" time="0.000355" classname="test" failure="x &lt; y">
			<failure type="testCodeFailure" message="x &lt; y">
[Error [ERR_TEST_FAILURE]: x < y] {
      at TestContext.<anonymous> (file:///tmp/tt/w2.mjs:5:35)
}
			</failure>
		</testcase>
		<testcase name="deeper" time="0.000139" classname="test">
			<skipped type="skipped" message="no openssl"/>
		</testcase>
	</testsuite>
	<testcase name="top" time="0.000152" classname="test"/>
	<!-- tests 4 -->
</testsuites>`;

const BUN = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="bun test" tests="5" assertions="0" failures="1" skipped="1" time="0.32">
  <testsuite name="w2_test.js" file="w2_test.js" tests="5" failures="1" skipped="1" time="0">
    <testsuite name="outer" file="w2_test.js" line="2" tests="4" failures="1" skipped="1" time="0">
      <testcase name="inner ok" classname="outer" time="0.000157" file="w2_test.js" line="3" />
      <testcase name="inner skip" classname="outer" time="0" file="w2_test.js" line="4">
        <skipped />
      </testcase>
      <testcase name="inner fail" classname="outer" time="0.000336" file="w2_test.js" line="5">
        <failure type="AssertionError" />
      </testcase>
      <testcase name="deeper" classname="outer" time="0" file="w2_test.js" line="6">
        <skipped />
      </testcase>
    </testsuite>
    <testcase name="top" classname="" time="0.000028" file="w2_test.js" line="8" />
  </testsuite>
</testsuites>`;

const EXPECTED = [
  ["outer > inner ok", "passed"],
  ["outer > inner skip", "skipped"],
  ["outer > inner fail", "failed"],
  ["outer > deeper", "skipped"],
  ["top", "passed"],
];

const byName = (a: string[], b: string[]) => a[0].localeCompare(b[0]);

for (const [runtime, xml] of Object.entries({ Deno: DENO, Node: NODE, Bun: BUN })) {
  test(`parseJUnit() reads ${runtime}'s report as leaf tests named after their blocks`, () => {
    const cases = parseJUnit(xml).map((c) => [c.name, c.status]);
    assert.deepEqual(cases.sort(byName), [...EXPECTED].sort(byName));
  });
}

test("parseJUnit() keeps failure messages and Node's skip reasons, unescaped", () => {
  const node = parseJUnit(NODE);
  assert.equal(node.find((c) => c.name === "outer > inner fail")?.message, "x < y");
  assert.equal(node.find((c) => c.name === "outer > deeper")?.message, "no openssl");
  const deno = parseJUnit(DENO);
  assert.equal(deno.find((c) => c.name === "outer > inner fail")?.message, "Uncaught Error: x < y");
});

function result(runtime: string, xml: string, code: number, reasons: [string, string][] = []) {
  return {
    runtime,
    suite: "w_test",
    cases: parseJUnit(xml),
    code,
    ms: 1000,
    skipReasons: new Map(reasons),
  } satisfies SuiteResult;
}

test("skipReason() takes the report's reason, else the recorded one, else another runtime's", () => {
  const node = result("Node", NODE, 1);
  const deno = result("Deno", DENO, 1, [["inner skip", "curl is not installed"]]);
  const skipped = (r: SuiteResult, name: string) => r.cases.find((c) => c.name === name)!;
  assert.equal(skipReason(node, skipped(node, "outer > deeper")), "no openssl");
  assert.equal(skipReason(deno, skipped(deno, "outer > inner skip")), "curl is not installed");
  assert.match(skipReason(deno, skipped(deno, "outer > deeper")), /^no reason given/);
  const fromNode = new Map([["outer > deeper", "no openssl"]]);
  assert.equal(skipReason(deno, skipped(deno, "outer > deeper"), fromNode), "no openssl");
});

test("printSummary() lists each suite, each failure and each skip with its reason, then totals", () => {
  const lines: string[] = [];
  const totals = printSummary(
    [
      result("Deno", DENO, 1, [["inner skip", "curl is not installed"], ["deeper", "no openssl"]]),
      result("Node", NODE, 1),
      result("Bun", "", 3),
    ],
    60_000,
    (line) => lines.push(line),
  );
  assert.deepEqual(totals, { passed: 4, failed: 3, skipped: 4 });
  const text = lines.join("\n");
  assert.match(text, /^Deno {2}w_test +2 passed, 1 failed, 2 skipped {2}\(1 s\)$/m);
  assert.match(text, /^Bun {3}w_test +0 passed, 1 failed {2}\(1 s\)$/m);
  assert.match(text, /^ {2}Deno w_test: outer > inner skip: curl is not installed$/m);
  assert.match(text, /^ {2}Node w_test: outer > deeper: no openssl$/m);
  assert.match(text, /^ {2}Deno w_test: outer > inner fail: Uncaught Error: x < y$/m);
  assert.match(text, /^ {2}Bun w_test: \(the run itself\): exited with code 3 and reported no/m);
  assert.equal(lines.at(-1), "4 passed, 3 failed, 4 skipped");
});

test("printSummary() ends with passed and failed only when nothing skipped", () => {
  const lines: string[] = [];
  printSummary([result("Deno", `<testcase name="a"/><testcase name="b"/>`, 0)], 1000, (line) => {
    lines.push(line);
  });
  assert.equal(lines.at(-1), "2 passed, 0 failed");
});
