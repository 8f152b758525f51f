// Tests for _http_cache.ts: the RFC 9111 rules as pure functions, and the
// bytes-bounded LRU store. The cache's request flow is tested end to end,
// over real sockets, in proxy_test.ts.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  byteRange,
  currentAge,
  type Entry,
  freshnessLifetime,
  MemoryStore,
  notModified,
  parseAge,
  parseCacheControl,
  surrogateDirectives,
  varyKey,
  whyNotStorable,
} from "./_http_cache.ts";

const h = (init: Record<string, string> = {}) => new Headers(init);
const DATE = "Sat, 05 Dec 2026 12:00:00 GMT";
const dateMs = Date.parse(DATE);

describe("parseCacheControl()", () => {
  test("reads tokens, quoted arguments and case-insensitive names", () => {
    const d = parseCacheControl('Max-Age=60, no-cache="Set-Cookie, X", public ,s-maxage="10"');
    assert.equal(d.get("max-age"), "60");
    assert.equal(d.get("no-cache"), "Set-Cookie, X");
    assert.equal(d.get("public"), "");
    assert.equal(d.get("s-maxage"), "10");
  });

  test("marks a directive repeated with another value as invalid", () => {
    const d = parseCacheControl("max-age=60, max-age=10");
    assert.equal(d.get("max-age"), "\0invalid");
    assert.equal(
      freshnessLifetime(200, h({ "cache-control": "max-age=60, max-age=10" })).lifetime,
      0,
    );
  });
});

describe("whyNotStorable()", () => {
  const ok = (
    response: Record<string, string>,
    request: Record<string, string> = {},
    status = 200,
  ) => whyNotStorable("GET", h(request), status, h(response));

  test("stores explicit and heuristic freshness, not no-store, private or unknown statuses", () => {
    assert.equal(ok({ "cache-control": "max-age=10" }), null);
    assert.equal(ok({}), null); // 200 is heuristically cacheable
    assert.equal(ok({ "cache-control": "no-store, max-age=10" }), "no-store");
    assert.equal(ok({ "cache-control": "private, max-age=10" }), "private");
    assert.equal(ok({}, { "cache-control": "no-store" }), "request-no-store");
    assert.equal(ok({}, {}, 302), "no-freshness");
    assert.equal(ok({ "cache-control": "max-age=10" }, {}, 302), null);
    assert.equal(ok({ "cache-control": "max-age=10" }, {}, 206), "status");
    assert.equal(ok({ "cache-control": "max-age=10" }, {}, 299), null);
    assert.equal(ok({ "cache-control": "max-age=10, must-understand" }, {}, 299), "status");
    assert.equal(ok({ "vary": "*", "cache-control": "max-age=10" }), "vary-star");
    assert.equal(whyNotStorable("POST", h(), 200, h({ "cache-control": "max-age=10" })), "method");
  });

  test("stores a response to a request with Authorization only when it says so (§3.5)", () => {
    const auth = { authorization: "Basic eDp5" };
    assert.equal(ok({ "cache-control": "max-age=10" }, auth), "authorization");
    assert.equal(ok({ "cache-control": "max-age=10, public" }, auth), null);
    assert.equal(ok({ "cache-control": "s-maxage=10" }, auth), null);
    assert.equal(ok({ "cache-control": "max-age=10, must-revalidate" }, auth), null);
  });

  test("lets Surrogate-Control for this cache override Cache-Control", () => {
    assert.equal(ok({ "cache-control": "no-store", "surrogate-control": "max-age=60" }), null);
    assert.equal(
      ok({ "cache-control": "max-age=60", "surrogate-control": "no-store" }),
      "surrogate-no-store",
    );
    assert.equal(
      ok({ "cache-control": "no-store", "surrogate-control": "max-age=60;other" }),
      "no-store",
    );
  });
});

describe("freshnessLifetime()", () => {
  test("prefers s-maxage, then max-age, then Expires, then the Last-Modified heuristic", () => {
    const f = (init: Record<string, string>, status = 200) =>
      freshnessLifetime(status, h(init)).lifetime;
    assert.equal(f({ "cache-control": "max-age=10, s-maxage=20" }), 20);
    assert.equal(
      f({ "cache-control": "max-age=10", expires: "Sun, 06 Dec 2026 12:00:00 GMT", date: DATE }),
      10,
    );
    assert.equal(f({ expires: "Sat, 05 Dec 2026 12:01:40 GMT", date: DATE }), 100);
    assert.equal(f({ expires: "0", date: DATE }), 0);
    assert.equal(f({ "last-modified": "Fri, 04 Dec 2026 12:00:00 GMT", date: DATE }), 8640);
    assert.equal(f({ "last-modified": "Fri, 04 Dec 2026 12:00:00 GMT", date: DATE }, 302), 0);
    assert.equal(f({ "cache-control": "max-age=10", "surrogate-control": "max-age=99" }), 99);
  });
});

describe("Age", () => {
  test("parseAge() takes one integer or a one-line list's first member; else stale", () => {
    assert.equal(parseAge(null), 0);
    assert.equal(parseAge("30"), 30);
    assert.equal(parseAge("0,7200"), 0);
    for (const bad of ["abc", "-1", "1.0", "0, 0", "7200;a=b"]) {
      assert.equal(parseAge(bad), 2 ** 31, bad);
    }
  });

  test("currentAge() adds the response delay, Age and resident time (§4.2.3)", () => {
    const basis = { requestTime: dateMs, responseTime: dateMs + 2000, date: dateMs, age: 10 };
    assert.equal(currentAge(basis, dateMs + 5000), 15); // 10 + 2 (delay) + 3 (resident)
    const skewed = { requestTime: dateMs, responseTime: dateMs, date: dateMs - 60_000, age: 0 };
    assert.equal(currentAge(skewed, dateMs), 60); // apparent age from Date
  });
});

describe("varyKey()", () => {
  test("normalises the named request fields and refuses Vary: *", () => {
    const a = varyKey(
      "Accept-Language, Accept-Encoding",
      h({ "accept-language": "en", "accept-encoding": "gzip,  br" }),
    );
    const b = varyKey(
      "accept-encoding,accept-language",
      h({ "accept-language": "en", "accept-encoding": "gzip,br" }),
    );
    assert.equal(a, b);
    assert.notEqual(
      varyKey("accept-language", h({ "accept-language": "fr" })),
      varyKey("accept-language", h()),
    );
    assert.equal(varyKey("*", h()), null);
    assert.equal(varyKey(null, h()), "");
  });
});

describe("conditionals and ranges", () => {
  test("notModified() compares ETags weakly and dates", () => {
    const stored = h({ etag: '"a"', "last-modified": DATE });
    assert.equal(notModified(h({ "if-none-match": 'W/"a"' }), stored), true);
    assert.equal(notModified(h({ "if-none-match": '"b", "a"' }), stored), true);
    assert.equal(notModified(h({ "if-none-match": '"b"' }), stored), false);
    assert.equal(notModified(h({ "if-modified-since": DATE }), stored), true);
    assert.equal(
      notModified(h({ "if-modified-since": "Fri, 04 Dec 2026 12:00:00 GMT" }), stored),
      false,
    );
  });

  test("byteRange() reads one range, a suffix, If-Range, and reports 416", () => {
    const stored = h({ etag: '"a"' });
    assert.deepEqual(byteRange(h({ range: "bytes=2-4" }), stored, 10), [2, 4]);
    assert.deepEqual(byteRange(h({ range: "bytes=-3" }), stored, 10), [7, 9]);
    assert.deepEqual(byteRange(h({ range: "bytes=5-" }), stored, 10), [5, 9]);
    assert.equal(byteRange(h({ range: "bytes=10-" }), stored, 10), "unsatisfiable");
    assert.equal(byteRange(h({ range: "bytes=0-1,3-4" }), stored, 10), null);
    assert.equal(byteRange(h({ range: "bytes=0-1", "if-range": '"b"' }), stored, 10), null);
    assert.deepEqual(byteRange(h({ range: "bytes=0-1", "if-range": '"a"' }), stored, 10), [0, 1]);
  });

  test("surrogateDirectives() keeps untargeted directives and ours", () => {
    assert.deepEqual([...surrogateDirectives("max-age=60;brick, no-store;cdn", "brick")!], [[
      "max-age",
      "60",
    ]]);
    assert.equal(surrogateDirectives("max-age=60;cdn", "brick"), null);
  });
});

describe("MemoryStore", () => {
  const entry = (url: string, bytes: number): Entry => ({
    url,
    vary: null,
    varyKey: "",
    status: 200,
    statusText: "OK",
    fields: [],
    body: new Uint8Array(bytes),
    basis: { requestTime: 0, responseTime: 0, date: 0, age: 0 },
    freshness: { lifetime: 60, heuristic: false, directives: new Map() },
    size: bytes + 300,
  });

  test("evicts the least recently used entries to stay within maxBytes", () => {
    const store = new MemoryStore(3500);
    const a = entry("a", 1000), b = entry("b", 1000), c = entry("c", 1000);
    store.put(a);
    store.put(b);
    store.touch(a); // b is now the least recently used
    store.put(c);
    assert.deepEqual([
      store.variants("a").length,
      store.variants("b").length,
      store.variants("c").length,
    ], [1, 0, 1]);
    assert.ok(store.bytes <= 3500);
  });

  test("refuses an entry larger than the store and replaces one with the same Vary values", () => {
    const store = new MemoryStore(2000);
    store.put(entry("big", 5000));
    assert.equal(store.size, 0);
    store.put(entry("x", 10));
    store.put(entry("x", 20));
    assert.equal(store.variants("x").length, 1);
    assert.equal(store.variants("x")[0].body.length, 20);
    store.invalidate("x");
    assert.equal(store.size, 0);
    assert.equal(store.bytes, 0);
  });
});
