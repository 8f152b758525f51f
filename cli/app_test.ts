// Tests for cli/app.ts: app modules (functions, { fetch } objects, Hono),
// folders of static files, and the errors for what cannot be served.

import assert from "node:assert/strict";
import net from "node:net";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { test } from "../_test_skips.ts";
import { chromiumPath, dumpDom } from "../_test_browser.ts";
import { handlerFromModule } from "./app.ts";
import { CliError } from "./errors.ts";
import {
  APP_EXAMPLE,
  APPS,
  curl,
  escapeRegExp,
  NO_HONO,
  NO_TESTDATA,
  READ,
  readUntil,
  runBrick,
  RUNTIME,
  SITE,
  startBrick,
  USAGE,
  withTempDir,
} from "./_test_cli.ts";

test("handlerFromModule() serves a default function, or a { fetch } object as `this`", async () => {
  const info = {
    remoteAddr: { hostname: "127.0.0.1", port: 1, transport: "tcp" as const },
    completed: Promise.resolve(),
  };
  const request = () => new Request("http://localhost/path");
  const plain = handlerFromModule({ default: (r: Request) => new Response(r.method) }, "a.mjs");
  assert.equal(await (await plain(request(), info)).text(), "GET");
  const app = {
    greeting: "Hi",
    fetch(this: { greeting: string }, r: Request) {
      return new Response(`${this.greeting} at ${new URL(r.url).pathname}`);
    },
  };
  const object = handlerFromModule({ default: app }, "b.mjs");
  assert.equal(await (await object(request(), info)).text(), "Hi at /path");
});

test("handlerFromModule() names what it found instead of a fetch handler", () => {
  const cases: [Record<string, unknown>, string][] = [
    [{}, `it has no default export (it exports nothing)\n${APP_EXAMPLE}`],
    [{ foo: 1, bar: 2 }, `it has no default export (its exports: foo, bar)\n${APP_EXAMPLE}`],
    [
      { fetch: () => new Response() },
      "it has no default export (its exports: fetch)\n" +
      "Export its fetch function as the default: export default { fetch }",
    ],
    [{ default: "hello" }, `its default export is a string, not a fetch handler\n${APP_EXAMPLE}`],
    [{ default: null }, `its default export is null, not a fetch handler\n${APP_EXAMPLE}`],
    [{ default: 42 }, `its default export is a number, not a fetch handler\n${APP_EXAMPLE}`],
    [
      { default: { port: 8000, handler() {} } },
      "its default export is an object without a fetch method (its keys: port, handler), " +
      `not a fetch handler\n${APP_EXAMPLE}`,
    ],
    [
      { default: class App {} },
      "its default export is a class, not a fetch handler " +
      `(export an instance instead: export default new App())\n${APP_EXAMPLE}`,
    ],
  ];
  for (const [module, message] of cases) {
    assert.throws(() => handlerFromModule(module, "app.mjs"), (error) => {
      assert.ok(error instanceof CliError);
      assert.equal(error.exitCode, 2);
      assert.equal(error.message, `Cannot serve "app.mjs": ${message}`);
      return true;
    });
  }
});

/** Checks the Hono fixture's routes, served at `url`, as a client sees them. */
async function checkHonoApp(url: string): Promise<void> {
  const home = await fetch(url);
  assert.equal(home.status, 200);
  // Hono's c.text() leaves the type to the Response constructor. Bun keeps
  // that default out of response.headers, so brick on Bun cannot see it yet.
  const type = home.headers.get("content-type");
  if (RUNTIME !== "Bun" || type !== null) assert.equal(type, "text/plain;charset=UTF-8");
  assert.equal(home.headers.get("x-middleware"), "hono", "the middleware ran");
  assert.equal(await home.text(), "Hello from Hono");

  const user = await fetch(url + "users/42?lang=fr");
  assert.equal(user.status, 200);
  assert.match(user.headers.get("content-type") ?? "", /^application\/json/);
  assert.deepEqual(await user.json(), { id: "42", lang: "fr" });

  const body = { list: [1, 2, 3], text: "é ✓" };
  const echo = await fetch(url + "echo", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  assert.equal(echo.status, 201);
  assert.deepEqual(await echo.json(), { received: body });

  const missing = await fetch(url + "no/such/route");
  assert.equal(missing.status, 404);
  assert.equal(missing.headers.get("x-middleware"), "hono");
  await missing.body?.cancel();
}

/**
 * Checks the Hono fixture's stream: its first part arrives while the app
 * still holds the rest back, so nothing on the way buffers the body.
 */
async function checkHonoStream(url: string): Promise<Response> {
  const response = await fetch(url + "stream");
  assert.equal(response.status, 200);
  const reader = response.body!.getReader();
  assert.equal(await readUntil(reader, /\n/), "first\n");
  assert.equal(await (await fetch(url + "release")).text(), "released");
  assert.equal(await readUntil(reader, /second\n/), "second\n");
  assert.equal((await reader.read()).done, true);
  return response;
}

test("brick CLI serves a Hono app module unchanged: routes, params, JSON, middleware", {
  skip: NO_HONO,
}, async () => {
  const app = join(APPS, "hono_app.mjs");
  const { brick, url } = await startBrick([app], { permissions: READ, config: true });
  try {
    assert.match(brick.stdout.text, new RegExp(`^ {2}App: {5}${escapeRegExp(app)}$`, "m"));
    await checkHonoApp(url);
    await brick.stdout.waitFor(/"POST \/echo HTTP\/1\.1" 201 (\d+|-)$/m);
  } finally {
    await brick.close();
  }
});

test("brick CLI streams a Hono app's response part by part, with --header and --cors added", {
  skip: NO_HONO,
}, async () => {
  const app = join(APPS, "hono_app.mjs");
  const { brick, url } = await startBrick(
    ["--app", app, "--header", "X-Served-By: brick", "--cors"],
    { permissions: READ, config: true },
  );
  try {
    const response = await checkHonoStream(url);
    assert.equal(response.headers.get("x-served-by"), "brick");
    assert.equal(response.headers.get("access-control-allow-origin"), "*");
    assert.equal(response.headers.get("x-middleware"), "hono");
    const home = await fetch(url);
    assert.equal(home.headers.get("x-served-by"), "brick");
    assert.equal(await home.text(), "Hello from Hono");
  } finally {
    await brick.close();
  }
});

test("brick CLI serves a TypeScript Hono app on Deno and Bun", {
  skip: RUNTIME === "Node" ? "Node 20 does not run TypeScript" : NO_HONO,
}, async () => {
  const app = join(APPS, "hono_app.ts");
  const { brick, url } = await startBrick([app], { permissions: READ, config: true });
  try {
    await checkHonoApp(url);
    await checkHonoStream(url);
  } finally {
    await brick.close();
  }
});

test("brick CLI serves a module whose default export is a handler function", {
  skip: NO_TESTDATA,
}, async () => {
  const { brick, url } = await startBrick(["--app", join(APPS, "handler.mjs")], {
    permissions: READ,
  });
  try {
    const get = await fetch(url + "a/b?c=d");
    assert.deepEqual(await get.json(), {
      method: "GET",
      path: "/a/b",
      body: null,
      client: "127.0.0.1",
    });
    const post = await fetch(url + "form", { method: "POST", body: "x=1" });
    assert.deepEqual(await post.json(), {
      method: "POST",
      path: "/form",
      body: "x=1",
      client: "127.0.0.1",
    });
  } finally {
    await brick.close();
  }
});

test("brick CLI serves a { fetch } object module, calling fetch with the object as this", {
  skip: NO_TESTDATA,
}, async () => {
  const { brick, url } = await startBrick([join(APPS, "fetch_object.mjs")], {
    permissions: READ,
  });
  try {
    const response = await fetch(url + "here");
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("x-app"), "fetch-object");
    assert.equal(await response.text(), "Hello from an object at /here\n");
    // The app sets no Content-Length: the log counts the 30 bytes brick sent.
    await brick.stdout.waitFor(/"GET \/here HTTP\/1\.1" 200 30$/m);
  } finally {
    await brick.close();
  }
});

test("brick CLI loads an app whose path holds a space, '#' and '%'", async () => {
  // The app is imported by a path relative to cli/app.ts, which must be
  // percent-encoded as a URL on Deno and Node and left as a path on Bun.
  await withTempDir({}, async (dir) => {
    const folder = join(dir, "my apps #1 100%");
    mkdirSync(folder);
    const app = join(folder, "the app.mjs");
    writeFileSync(app, 'export default () => new Response("from the spaced app");\n');
    const { brick, url } = await startBrick([app], { permissions: READ });
    try {
      assert.equal(await (await fetch(url)).text(), "from the spaced app");
    } finally {
      await brick.close();
    }
  });
});

test("brick CLI exits 2 naming what a module exports instead of a fetch handler", async () => {
  await withTempDir({
    "exports.mjs": "export const foo = 1;\nexport function bar() {}\n",
    "string.mjs": 'export default "hello";\n',
  }, async (dir) => {
    const exports = join(dir, "exports.mjs");
    let result = await runBrick([exports], { permissions: READ });
    assert.equal(result.code, 2);
    assert.equal(
      result.stderr,
      `Cannot serve "${exports}": it has no default export (its exports: bar, foo)\n` +
        `${APP_EXAMPLE}\n`,
    );
    const string = join(dir, "string.mjs");
    result = await runBrick(["--app", string], { permissions: READ });
    assert.equal(result.code, 2);
    assert.equal(
      result.stderr,
      `Cannot serve "${string}": its default export is a string, not a fetch handler\n` +
        `${APP_EXAMPLE}\n`,
    );
  });
});

test("brick CLI exits 1 with the error when the app module throws while loading", async () => {
  await withTempDir({
    "throws.mjs": 'throw new Error("DATABASE_URL is not set");\n',
    "syntax.mjs": "export default {\n",
  }, async (dir) => {
    const throws = join(dir, "throws.mjs");
    let result = await runBrick([throws], { permissions: READ });
    assert.equal(result.code, 1);
    assert.ok(
      result.stderr.startsWith(`Cannot load "${throws}": it threw while loading\n`),
      result.stderr,
    );
    assert.match(result.stderr, /Error: DATABASE_URL is not set\n/);
    assert.match(result.stderr, /throws\.mjs:1/, "the stack points at the module");
    const syntax = join(dir, "syntax.mjs");
    result = await runBrick([syntax], { permissions: READ });
    assert.equal(result.code, 1);
    assert.ok(result.stderr.startsWith(`Cannot load "${syntax}": it threw while loading\n`));
    // Deno and Node throw a SyntaxError; Bun a BuildMessage with its position.
    assert.match(result.stderr, /SyntaxError|BuildMessage/);
    assert.match(result.stderr, /syntax\.mjs/, "the message says where");
  });
});

test("brick CLI exits 2 with the path when the app or folder does not exist", async () => {
  await withTempDir({}, async (dir) => {
    for (
      const args of [
        ["--app", join(dir, "missing.mjs")],
        ["--root", join(dir, "missing")],
        [join(dir, "missing")],
      ]
    ) {
      const { code, stdout, stderr } = await runBrick(args, { permissions: READ });
      assert.equal(code, 2, `for ${args}`);
      const path = args.at(-1)!;
      assert.equal(stderr, `Cannot find "${path}": no such file or folder (${path})\n`);
      assert.equal(stdout, "", "nothing listens");
    }
  });
});

test("brick CLI exits 2 when the path is the wrong kind for --app or --root", async () => {
  await withTempDir(
    { "app.mjs": "export default () => new Response();\n", "notes.txt": "x" },
    async (dir) => {
      const app = join(dir, "app.mjs");
      const notes = join(dir, "notes.txt");
      const cases: [string[], string][] = [
        [
          ["--root", app],
          `Cannot serve "${app}" as a folder: it is a file (to serve it as an app: --app ${app})`,
        ],
        [
          ["--app", dir],
          `Cannot serve "${dir}" as an app: it is a folder (to serve its files: --root ${dir})`,
        ],
        [
          [notes],
          `Cannot serve "${notes}": an app module's name ends in .ts, .mts, .tsx, .js, .mjs, .cjs, ` +
          ".jsx; to serve static files, give the folder that holds them",
        ],
      ];
      for (const [args, message] of cases) {
        const { code, stderr } = await runBrick(args, { permissions: READ });
        assert.equal(code, 2, `for ${args}`);
        assert.equal(stderr, message + "\n");
      }
    },
  );
});

test("brick CLI exits 2 when a folder-only flag such as --dotfiles comes with an app", async () => {
  await withTempDir({ "app.mjs": "export default () => new Response();\n" }, async (dir) => {
    const app = join(dir, "app.mjs");
    for (const flag of ["--dotfiles", "--no-listing", "--no-compress"]) {
      const { code, stderr } = await runBrick([app, flag], { permissions: READ });
      assert.equal(code, 2);
      assert.equal(
        stderr,
        `Flag "${flag}" applies to a folder only, and brick serves an app\n${USAGE}\n`,
      );
    }
  });
});

test("brick CLI runs a TypeScript app on Deno and Bun; Node exits 2 with what to run instead", async () => {
  const source = "export default {\n" +
    "  fetch(request: Request): Response {\n" +
    "    return new Response(`typed ${new URL(request.url).pathname}`);\n" +
    "  },\n" +
    "};\n";
  await withTempDir({ "app.ts": source }, async (dir) => {
    const app = join(dir, "app.ts");
    if (RUNTIME === "Node") {
      const { code, stderr } = await runBrick([app, "--port", "0"]);
      assert.equal(code, 2);
      const js = join(dir, "app.js");
      assert.equal(
        stderr,
        `Cannot import "${app}": Node ${process.version} does not run TypeScript ` +
          "(Deno, Bun and Node 22.18 or later do)\n" +
          `Run it with Bun instead: bunx --bun brick ${app} --port 0\n` +
          `Or compile it to ${js} and run: brick ${js}\n`,
      );
      return;
    }
    const { brick, url } = await startBrick([app], { permissions: READ });
    try {
      assert.equal(await (await fetch(url + "x")).text(), "typed /x");
    } finally {
      await brick.close();
    }
  });
});

test("brick CLI serves a folder: index.html, a listing, a file, 404", {
  skip: NO_TESTDATA,
}, async () => {
  const { brick, url } = await startBrick([SITE], { permissions: READ });
  try {
    assert.match(brick.stdout.text, new RegExp(`^ {2}Folder: {2}${escapeRegExp(SITE)}$`, "m"));
    const index = await fetch(url);
    assert.equal(index.status, 200);
    assert.match(index.headers.get("content-type") ?? "", /^text\/html/);
    assert.match(await index.text(), /<h1 id="title">Served by brick<\/h1>/);

    const listing = await fetch(url + "docs/");
    assert.equal(listing.status, 200);
    assert.match(listing.headers.get("content-type") ?? "", /^text\/html/);
    const html = await listing.text();
    assert.match(html, /first\.txt/);
    assert.match(html, /second\.txt/);

    const file = await fetch(url + "docs/first.txt");
    assert.equal(file.status, 200);
    assert.match(file.headers.get("content-type") ?? "", /^text\/plain/);
    assert.equal(await file.text(), "first document\n");

    const missing = await fetch(url + "no-such-file.txt");
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
    await brick.stdout.waitFor(/"GET \/no-such-file\.txt HTTP\/1\.1" 404 (\d+|-)$/m);
  } finally {
    await brick.close();
  }
});

test("brick CLI with --no-listing answers 404 for a folder without index.html", {
  skip: NO_TESTDATA,
}, async () => {
  const { brick, url } = await startBrick(["--root", SITE, "--no-listing"], { permissions: READ });
  try {
    const listing = await fetch(url + "docs/");
    assert.equal(listing.status, 404);
    await listing.body?.cancel();
    const index = await fetch(url);
    assert.equal(index.status, 200, "index.html is still served");
    await index.body?.cancel();
  } finally {
    await brick.close();
  }
});

test("brick CLI serves dotfiles only with --dotfiles", { skip: NO_TESTDATA }, async () => {
  for (const [flags, status] of [[[], 404], [["--dotfiles"], 200]] as const) {
    const { brick, url } = await startBrick([SITE, ...flags], { permissions: READ });
    try {
      const response = await fetch(url + ".secret.txt");
      assert.equal(response.status, status, `with ${JSON.stringify(flags)}`);
      const text = await response.text();
      if (status === 200) assert.equal(text, "not for everyone\n");
    } finally {
      await brick.close();
    }
  }
});

test("brick CLI answers curl's range request and a conditional request with the ETag", {
  skip: NO_TESTDATA,
}, async () => {
  const { brick, url } = await startBrick([SITE], { permissions: READ });
  try {
    const range = await curl(["--include", "--range", "0-4", url + "hello.txt"]);
    assert.equal(range.code, 0, range.stderr);
    const [head, body] = range.stdout.split("\r\n\r\n");
    assert.match(head, /^HTTP\/1\.1 206 Partial Content\r\n/);
    assert.match(head, /^content-range: bytes 0-4\/23$/im);
    assert.equal(body, "Hello");

    const full = await curl(["--include", url + "hello.txt"]);
    const etag = full.stdout.match(/^etag: (.+)\r$/im)?.[1];
    assert.ok(etag, `an ETag in ${JSON.stringify(full.stdout)}`);
    const conditional = await curl([
      "--include",
      "--header",
      `If-None-Match: ${etag}`,
      url + "hello.txt",
    ]);
    assert.equal(conditional.code, 0, conditional.stderr);
    assert.match(conditional.stdout, /^HTTP\/1\.1 304 Not Modified\r\n/);
    assert.ok(conditional.stdout.endsWith("\r\n\r\n"), "a 304 has no body");
    assert.match(conditional.stdout, new RegExp(`^etag: ${escapeRegExp(etag)}\r$`, "im"));
  } finally {
    await brick.close();
  }
});

test("brick CLI serves a page that headless Chromium renders with its CSS, script and image", {
  skip: NO_TESTDATA || (chromiumPath() === null ? "Chromium is not installed" : false),
  // Chromium alone can take longer to start than Bun's default 5 s on a loaded machine.
  timeout: 60_000,
}, async () => {
  const { brick, url } = await startBrick([SITE], { permissions: READ });
  try {
    const dom = await dumpDom(url, { timeoutMs: 30_000, virtualTimeBudgetMs: 5_000 });
    const results = dom.match(/<p id="results">(.*?)<\/p>/)?.[1];
    assert.ok(results, `the results paragraph in ${dom}`);
    assert.deepEqual(JSON.parse(results), {
      script: "ran",
      imageWidth: 3,
      imageHeight: 2,
      color: "rgb(1, 2, 3)",
      marginLeft: "17px",
    });
    for (const path of ["/", "/style.css", "/check.js", "/pixel.png"]) {
      await brick.stdout.waitFor(new RegExp(`"GET ${escapeRegExp(path)} HTTP/1\\.1" 200 `));
    }
  } finally {
    await brick.close();
  }
});

test("dumpDom() kills Chromium when the page does not load within timeoutMs", {
  skip: chromiumPath() === null ? "Chromium is not installed" : false,
}, async () => {
  // A server that accepts connections and never answers.
  const sockets = new Set<net.Socket>();
  const silent = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => silent.listen({ host: "127.0.0.1", port: 0 }, resolve));
  const { port } = silent.address() as net.AddressInfo;
  try {
    const started = Date.now();
    await assert.rejects(
      dumpDom(`http://127.0.0.1:${port}/`, { timeoutMs: 1_000 }),
      /^Error: Chromium did not finish loading http:\/\/127\.0\.0\.1:\d+\/ within 1000 ms/,
    );
    assert.ok(Date.now() - started < 6_000, "the timeout ends it");
  } finally {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => silent.close(resolve));
  }
});
