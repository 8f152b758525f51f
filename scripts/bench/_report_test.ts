// Tests of the bench's figures and verdicts (_report.ts): medians, per-round ratios, and the ✓/✗
// of each kind of target, on measurements made up for each case.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  type Check,
  evaluate,
  formatRatioRange,
  formatTarget,
  KEPT_OPEN,
  markdownTable,
  type Measurement,
  median,
  medianRatio,
  P99,
  PEAK_RSS,
  REQUESTS_PER_SEC,
  type Results,
  roundRatios,
  type Rounds,
  RSS_PER_CONNECTION,
  summarize,
} from "./_report.ts";

/** A wrk measurement with the given figures. */
function wrk(requestsPerSec: number, p99Ms = 1, peakRssKiB = 50_000): Measurement {
  return { requestsPerSec, mibPerSec: NaN, p99Ms, errors: 0, peakRssKiB };
}

/** An idle measurement: `opened` connections grew RSS by `grownKiB`, `keptOpen` survived. */
function idle(opened: number, keptOpen: number, grownKiB: number): Measurement {
  return {
    requestsPerSec: NaN,
    mibPerSec: NaN,
    p99Ms: NaN,
    errors: opened - keptOpen,
    peakRssKiB: NaN,
    idle: {
      connections: 1000,
      opened,
      keptOpen,
      rssBeforeKiB: 40_000,
      rssHeldKiB: 40_000 + grownKiB,
    },
  };
}

function results(scenario: string, byServer: Record<string, Rounds>): Results {
  return new Map([[scenario, new Map(Object.entries(byServer))]]);
}

test("median() skips NaN and averages the middle two of an even count", () => {
  assert.equal(median([3, NaN, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.ok(Number.isNaN(median([NaN])));
});

test("medianRatio() divides round by round, not median by median", () => {
  // Medians alone would give 200 / 200 = 1; round by round brick is 2x, 2x and 0.5x.
  const brick = [wrk(100), wrk(400), wrk(200)];
  const base = [wrk(50), wrk(200), wrk(400)];
  assert.equal(medianRatio(REQUESTS_PER_SEC, brick, base), 2);
});

test("formatRatioRange() shows the lowest and highest per-round ratios beside the median", () => {
  const brick = [wrk(100), wrk(90), wrk(120)];
  const base = [wrk(100), wrk(100), wrk(100)];
  const ratios = roundRatios(REQUESTS_PER_SEC, brick, base);
  assert.deepEqual(ratios, [1, 0.9, 1.2]);
  assert.equal(
    formatRatioRange(medianRatio(REQUESTS_PER_SEC, brick, base), ratios),
    "1.00× (0.90–1.20)",
  );
  assert.equal(formatRatioRange(2, [2]), "2.00×");
  assert.equal(formatRatioRange(1, [1.001, 0.999]), "1.00×");
  assert.equal(formatRatioRange(NaN, []), "n/a");
});

test("medianRatio() uses only the rounds both servers completed", () => {
  const brick = [wrk(100), undefined, wrk(300)];
  const base = [wrk(100), wrk(1), undefined];
  assert.equal(medianRatio(REQUESTS_PER_SEC, brick, base), 1);
  assert.ok(Number.isNaN(medianRatio(REQUESTS_PER_SEC, [undefined], [wrk(1)])));
});

test("evaluate() checks an 'at least' ratio target", () => {
  const check: Check = {
    scenario: "hello",
    metric: REQUESTS_PER_SEC,
    server: "brick",
    against: "deno",
    target: { kind: "at least", value: 0.6 },
  };
  const pass = results("hello", { brick: [wrk(70)], deno: [wrk(100)] });
  const fail = results("hello", { brick: [wrk(50)], deno: [wrk(100)] });
  assert.deepEqual(evaluate(check, pass), { verdict: "✓", ratio: 0.7 });
  assert.deepEqual(evaluate(check, fail), { verdict: "✗", ratio: 0.5 });
});

test("evaluate() checks an 'at most' ratio target on p99 latency", () => {
  const check: Check = {
    scenario: "hello",
    metric: P99,
    server: "brick",
    against: "deno",
    target: { kind: "at most", value: 1.5 },
  };
  const pass = results("hello", { brick: [wrk(1, 3)], deno: [wrk(1, 2)] });
  const fail = results("hello", { brick: [wrk(1, 4)], deno: [wrk(1, 2)] });
  assert.equal(evaluate(check, pass).verdict, "✓");
  assert.equal(evaluate(check, fail).verdict, "✗");
});

test("evaluate() checks a limit on the server's own median figure", () => {
  const check: Check = {
    scenario: "post",
    metric: PEAK_RSS,
    server: "brick",
    target: { kind: "limit", value: 100 * 1024 },
  };
  const under = [wrk(1, 1, 90 * 1024), wrk(1, 1, 99 * 1024), wrk(1, 1, 200 * 1024)];
  const over = [wrk(1, 1, 90 * 1024), wrk(1, 1, 101 * 1024), wrk(1, 1, 200 * 1024)];
  assert.equal(evaluate(check, results("post", { brick: under })).verdict, "✓");
  assert.equal(evaluate(check, results("post", { brick: over })).verdict, "✗");
  assert.equal(formatTarget(check.target, PEAK_RSS), "≤ 100.0 MiB");
});

test("evaluate() limits RSS per idle connection by growth over connections opened", () => {
  const check: Check = {
    scenario: "idle",
    metric: RSS_PER_CONNECTION,
    server: "brick",
    target: { kind: "limit", value: 10 },
  };
  assert.equal(summarize(RSS_PER_CONNECTION, [idle(1000, 1000, 9_500)]), 9.5);
  assert.equal(evaluate(check, results("idle", { brick: [idle(1000, 1000, 9_500)] })).verdict, "✓");
  assert.equal(
    evaluate(check, results("idle", { brick: [idle(1000, 1000, 10_500)] })).verdict,
    "✗",
  );
});

test("evaluate() wants every idle connection kept open in every round", () => {
  const check: Check = {
    scenario: "idle",
    metric: KEPT_OPEN,
    server: "brick",
    target: { kind: "all open" },
  };
  const all = [idle(1000, 1000, 1), idle(1000, 1000, 1)];
  const oneClosed = [idle(1000, 1000, 1), idle(1000, 999, 1)];
  const notAllOpened = [idle(990, 990, 1)];
  const failedRound = [idle(1000, 1000, 1), undefined];
  assert.equal(evaluate(check, results("idle", { brick: all })).verdict, "✓");
  assert.equal(evaluate(check, results("idle", { brick: oneClosed })).verdict, "✗");
  assert.equal(evaluate(check, results("idle", { brick: notAllOpened })).verdict, "✗");
  assert.equal(evaluate(check, results("idle", { brick: failedRound })).verdict, "n/a");
  assert.equal(summarize(KEPT_OPEN, oneClosed), 999, "the fewest over rounds");
});

test("evaluate() says n/a when a server has no figure, and nothing without a target", () => {
  const check: Check = {
    scenario: "hello",
    metric: REQUESTS_PER_SEC,
    server: "brick",
    against: "deno",
    target: { kind: "at least", value: 1 },
  };
  const failed = results("hello", { brick: [undefined], deno: [wrk(100)] });
  assert.equal(evaluate(check, failed).verdict, "n/a");
  const noTarget = { ...check, target: undefined };
  const ran = results("hello", { brick: [wrk(150)], deno: [wrk(100)] });
  assert.deepEqual(evaluate(noTarget, ran), { verdict: "", ratio: 1.5 });
});

test("markdownTable() pads columns and right-aligns the ones asked", () => {
  const table = markdownTable(["a", "number"], [false, true], [["x", "1"], ["long", "22"]]);
  assert.equal(
    table,
    "| a    | number |\n| ---- | -----: |\n| x    |      1 |\n| long |     22 |\n",
  );
});

test("formatTarget() prints a ratio with one decimal, two where one would round it", () => {
  assert.equal(formatTarget({ kind: "at least", value: 1.3 }, PEAK_RSS), "≥ 1.3×");
  assert.equal(formatTarget({ kind: "at least", value: 2 }, PEAK_RSS), "≥ 2.0×");
  assert.equal(formatTarget({ kind: "at least", value: 0.95 }, PEAK_RSS), "≥ 0.95×");
  assert.equal(formatTarget({ kind: "at most", value: 1.05 }, PEAK_RSS), "≤ 1.05×");
});
