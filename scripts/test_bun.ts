/**
 * Runs every test suite of the npm build under Bun, one `bun test` process per
 * file: Bun's `node:test` support cannot run two files' top-level suites in
 * one process. Bun comes from npm, pinned, like Deno.
 *
 * ```sh
 * deno task build:npm && deno task test:bun
 * ```
 *
 * @module
 */

import { readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const BUN = "bun@1.3.14";
const NPM_DIR = fileURLToPath(new URL("../npm/", import.meta.url));

if (import.meta.main) {
  const suites = ["", "cli/"].flatMap((folder) =>
    readdirSync(join(NPM_DIR, folder)).filter((file) => file.endsWith("_test.js")).sort()
      .map((file) => folder + file)
  );
  if (suites.length === 0) {
    console.error("No test suites in npm/: run `deno task build:npm` first");
    Deno.exit(1);
  }
  const failed: string[] = [];
  for (const suite of suites) {
    const { code } = await new Deno.Command("npx", {
      args: ["-y", BUN, "test", "./" + join("npm", suite)],
      cwd: join(NPM_DIR, ".."),
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (code !== 0) failed.push(suite);
  }
  if (failed.length > 0) {
    console.error(`Bun: ${failed.length} of ${suites.length} suites failed: ${failed.join(", ")}`);
    Deno.exit(1);
  }
  console.log(`Bun: all ${suites.length} suites passed`);
}
