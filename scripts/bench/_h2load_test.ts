import assert from "node:assert/strict";
import { test } from "node:test";
import { h2loadArgs, parseH2loadOutput } from "./_h2load.ts";

const OUTPUT = `starting benchmark...
Application protocol: http/1.1

finished in 2.01s, 10141.00 req/s, 1.25MB/s
requests: 20282 total, 20346 started, 20282 done, 20280 succeeded, 2 failed, 0 errored, 1 timeout
status codes: 20270 2xx, 0 3xx, 4 4xx, 6 5xx
traffic: 2.50MB (2616378) total, 1.64MB (1723970) headers (space savings 0.00%), 257.49KB (263666) data
`;

test("parseH2loadOutput() reads the rate, the requests that succeeded and every kind of error", () => {
  assert.deepEqual(parseH2loadOutput(OUTPUT), {
    requestsPerSec: 10141,
    succeeded: 20280,
    errors: 2 + 0 + 1 + 4 + 6,
  });
});

test("parseH2loadOutput() throws on a run that completed nothing or printed no summary", () => {
  assert.throws(
    () => parseH2loadOutput(OUTPUT.replace("20280 succeeded", "0 succeeded")),
    /no request/,
  );
  assert.throws(
    () => parseH2loadOutput("connect: Connection refused\n"),
    /Unexpected h2load output/,
  );
});

test("h2loadArgs() asks for HTTP/1.1, the connections and a duration", () => {
  assert.deepEqual(h2loadArgs("http://127.0.0.1:1/", 3, 64), [
    "--h1",
    "--clients",
    "64",
    "--threads",
    "1",
    "--duration",
    "3",
    "http://127.0.0.1:1/",
  ]);
});
