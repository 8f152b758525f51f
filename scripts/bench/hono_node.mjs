/**
 * Hono on `@hono/node-server`, measured by `deno task bench` in every scenario but `static`.
 *
 * The packages are not dependencies of the repository: the bench installs them with npm into a
 * cache directory outside it and passes that directory in `BRICK_BENCH_NODE_DIR` (the directory
 * holding `node_modules/`). ES modules ignore `NODE_PATH`, so each package is imported from its
 * absolute path, resolved through the `import` entry of its `package.json` `exports`.
 *
 * ```sh
 * npm install --prefix /tmp/hono --no-save --no-package-lock @hono/node-server hono
 * BRICK_BENCH_NODE_DIR=/tmp/hono node scripts/bench/hono_node.mjs --scenario hello [--port 8000]
 * ```
 *
 * A POST body is read whole (`c.req.arrayBuffer()`) before the answer. The keep-alive timeout of
 * the underlying `node:http` server is raised from 5 s to 65 s, as in `node_http.mjs`. The
 * command line and what each scenario answers are described in `_server_args.mjs`.
 *
 * @module
 */

import { readFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { pathToFileURL } from "node:url";
import { HELLO, parseServerArgs } from "./_server_args.mjs";

const dir = process.env.BRICK_BENCH_NODE_DIR;
if (!dir) {
  console.error("BRICK_BENCH_NODE_DIR must name the directory holding node_modules/");
  process.exit(2);
}

/** The ES module file a package's `exports["."]` maps `import` to (or `main`). */
function entryPoint(packageDir) {
  const manifest = JSON.parse(readFileSync(join(packageDir, "package.json"), "utf8"));
  let entry = manifest.exports?.["."] ?? manifest.exports;
  while (entry !== null && typeof entry === "object") entry = entry.import ?? entry.default;
  return join(packageDir, typeof entry === "string" ? entry : manifest.main ?? "index.js");
}

/** Imports an installed package by name from `dir`'s node_modules. */
function importPackage(name) {
  return import(pathToFileURL(entryPoint(join(dir, "node_modules", name))).href);
}

const { Hono } = await importPackage("hono");
const { serve } = await importPackage("@hono/node-server");

const { scenario, port } = parseServerArgs(process.argv.slice(2));
if (scenario === "static") {
  console.error("error: the Hono server has no static scenario");
  process.exit(2);
}

const app = new Hono();
if (scenario === "post") {
  app.post("/", async (c) => {
    await c.req.arrayBuffer();
    return c.text(HELLO);
  });
} else {
  app.get("/", (c) => c.text(HELLO));
}

const server = serve(
  { fetch: app.fetch, port, hostname: "127.0.0.1" },
  (info) => console.log(`LISTENING ${info.port}`),
);
server.keepAliveTimeout = 65_000;
