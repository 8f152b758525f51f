/**
 * Runs every test suite of the npm build under Bun, one `bun test` process per
 * file: Bun's `node:test` support cannot run two files' top-level suites in
 * one process. Bun comes from npm, pinned, like Deno. brick runs on Bun's own
 * sockets (`Bun.listen`) there; `--transport node:net` runs the suites on
 * Bun's `node:net` instead (`BRICK_TRANSPORT=node:net`), the transport brick
 * had on Bun before, to see what depends on it. Naming suites runs only those.
 *
 * ```sh
 * deno task build:npm && deno task test:bun
 * deno task test:bun mod_test transport_test         # two suites
 * deno task test:bun --transport node:net mod_test   # on Bun's node:net
 * ```
 *
 * @module
 */

import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const BUN = "bun@1.3.14";
const NPM_DIR = fileURLToPath(new URL("../npm/", import.meta.url));
const TRANSPORTS = ["bun", "node:net"];

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    options: { transport: { type: "string", default: "bun" } },
    allowPositionals: true,
  });
  if (!TRANSPORTS.includes(values.transport)) {
    console.error(`Unknown --transport "${values.transport}": use ${TRANSPORTS.join(" or ")}`);
    Deno.exit(2);
  }
  const wanted = positionals.map((name) => name.replace(/(\.[jt]s)?$/, ".js"));
  const inFolder = (folder: string) =>
    readdirSync(join(NPM_DIR, folder)).filter((file) => file.endsWith("_test.js")).sort()
      .map((file) => folder === "" ? file : `${folder}/${file}`);
  const suites = [...inFolder(""), ...(existsSync(join(NPM_DIR, "cli")) ? inFolder("cli") : [])]
    .filter((file) => wanted.length === 0 || wanted.includes(file));
  if (suites.length === 0) {
    console.error(
      wanted.length === 0
        ? "No test suites in npm/: run `deno task build:npm` first"
        : `No suite named ${positionals.join(", ")} in npm/`,
    );
    Deno.exit(1);
  }
  const env = values.transport === "node:net" ? { BRICK_TRANSPORT: "node:net" } : undefined;
  const failed: string[] = [];
  for (const suite of suites) {
    const { code } = await new Deno.Command("npx", {
      args: ["-y", BUN, "test", "./" + join("npm", suite)],
      cwd: join(NPM_DIR, ".."),
      env,
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (code !== 0) failed.push(suite);
  }
  const on = values.transport === "node:net" ? "Bun's node:net" : "Bun.listen";
  if (failed.length > 0) {
    console.error(
      `Bun (${on}): ${failed.length} of ${suites.length} suites failed: ${failed.join(", ")}`,
    );
    Deno.exit(1);
  }
  console.log(`Bun (${on}): all ${suites.length} suites passed`);
}
