// Tests for cli/headers.ts: --header and --cors on app and file responses.

import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "../_test_skips.ts";
import { APPS, NO_HONO, NO_TESTDATA, READ, SITE, startBrick, withTempDir } from "./_test_cli.ts";

test("brick CLI adds --header fields to responses whose headers are immutable", async () => {
  // Response.redirect() and fetch() results have immutable headers: brick
  // answers with a copy that keeps the status, the fields and the body.
  const source = "export default (request) =>\n" +
    '  new URL(request.url).pathname === "/go"\n' +
    '    ? Response.redirect("http://127.0.0.1/elsewhere", 307)\n' +
    '    : new Response("here");\n';
  await withTempDir({ "redirect.mjs": source }, async (dir) => {
    const { brick, url } = await startBrick(
      [join(dir, "redirect.mjs"), "--header", "X-Extra: 1"],
      { permissions: READ },
    );
    try {
      const redirect = await fetch(url + "go", { redirect: "manual" });
      assert.equal(redirect.status, 307);
      assert.equal(redirect.headers.get("location"), "http://127.0.0.1/elsewhere");
      assert.equal(redirect.headers.get("x-extra"), "1");
      await redirect.body?.cancel();
      const plain = await fetch(url);
      assert.equal(plain.headers.get("x-extra"), "1");
      assert.equal(await plain.text(), "here");
    } finally {
      await brick.close();
    }
  });
});

test("brick CLI with --cors answers a preflight that the app leaves unanswered", {
  skip: NO_HONO,
}, async () => {
  const { brick, url } = await startBrick([join(APPS, "hono_app.mjs"), "--cors"], {
    permissions: READ,
    config: true,
  });
  try {
    const preflight = await fetch(url + "echo", {
      method: "OPTIONS",
      headers: {
        origin: "http://elsewhere.test",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
      },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get("access-control-allow-origin"), "*");
    assert.equal(preflight.headers.get("access-control-allow-methods"), "POST");
    assert.equal(preflight.headers.get("access-control-allow-headers"), "content-type");
    const plain = await fetch(url + "echo", { method: "OPTIONS" });
    assert.equal(plain.status, 404, "an OPTIONS request that is no preflight reaches the app");
    await plain.body?.cancel();
  } finally {
    await brick.close();
  }
});

test("brick CLI adds --cors and --header fields to the files it serves and to 404s", {
  skip: NO_TESTDATA,
}, async () => {
  const { brick, url } = await startBrick(
    [SITE, "--cors", "--header", "Cache-Control: no-store", "--header", "X-Served-By: brick"],
    { permissions: READ },
  );
  try {
    for (const [path, status] of [["hello.txt", 200], ["missing.txt", 404]] as const) {
      const response = await fetch(url + path);
      assert.equal(response.status, status);
      assert.equal(response.headers.get("access-control-allow-origin"), "*", path);
      assert.equal(response.headers.get("cache-control"), "no-store", path);
      assert.equal(response.headers.get("x-served-by"), "brick", path);
      await response.body?.cancel();
    }
  } finally {
    await brick.close();
  }
});
