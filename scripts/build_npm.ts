/**
 * Builds the npm package `brickhttp` into `npm/` from the same source that
 * Deno runs: ESM JavaScript and `.d.ts` files for `mod.ts` and `main.ts`, a
 * `package.json`, README.md and LICENSE.
 *
 * ```sh
 * deno task build:npm
 * cd npm && npm pack             # the package
 * node --test npm/mod_test.js    # the protocol tests, against the build on Node
 * node --test npm/main_test.js   # the CLI tests, against the build on Node
 * ```
 *
 * The emit uses the TypeScript compiler API (`npm:typescript`, pinned) without
 * type checking: `deno check` checks the source, with Deno's types, and the
 * runtime guards keep Deno's APIs off the Node path. What this script checks
 * instead is what npm users see: that the emitted `.d.ts` files type-check on
 * their own, with no `Deno` types around.
 *
 * The test files (`*_test.ts`, `_test_utils.ts`) are emitted too, as plain
 * JavaScript beside the package files, so that `node --test` runs the same
 * suites against the build. They are not listed in the package's `files`.
 *
 * @module
 */

import ts from "typescript";
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { basename, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const OUT = join(ROOT, "npm");

/** Source files whose JavaScript and declarations make up the package. */
const PACKAGE_SOURCES = ["mod.ts", "main.ts"];
/** Test sources emitted as JavaScript only, for `node --test`. */
const TEST_SOURCES = ["mod_test.ts", "_test_utils.ts", "main_test.ts"];

/** The package's own name; the JSR name in doc examples is replaced with it. */
const NAME = "brickhttp";
const JSR_NAME = "@brick/http";

const COMPILER_OPTIONS: ts.CompilerOptions = {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.ESNext,
  moduleResolution: ts.ModuleResolutionKind.Bundler,
  // `./mod.ts` in the source becomes `./mod.js` in the output.
  allowImportingTsExtensions: true,
  rewriteRelativeImportExtensions: true,
  declaration: true,
  // `deno check` checks types; here the `Deno` global is unknown on purpose.
  noCheck: true,
  isolatedModules: true,
  types: [],
  lib: ["lib.es2022.d.ts", "lib.dom.d.ts", "lib.esnext.disposable.d.ts"],
  rootDir: ROOT,
  outDir: OUT,
  newLine: ts.NewLineKind.LineFeed,
  removeComments: false,
  skipLibCheck: true,
};

/** What a consumer on Node might have: no `Deno` and no `@types/node`. */
const CONSUMER_OPTIONS: ts.CompilerOptions = {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  lib: ["lib.es2022.d.ts", "lib.dom.d.ts"],
  types: [],
  strict: true,
  noEmit: true,
  skipLibCheck: false,
};

interface DenoJson {
  version: string;
  license: string;
}

if (import.meta.main) {
  try {
    console.log(build());
  } catch (error) {
    console.error(error instanceof Error ? error.message : error);
    Deno.exit(1);
  }
}

/**
 * Builds `npm/` from scratch.
 *
 * @returns A one-line summary of what was written.
 * @throws {Error} When the emit or the check of the declarations fails.
 */
export function build(): string {
  const config = JSON.parse(readFileSync(join(ROOT, "deno.json"), "utf8")) as DenoJson;
  rmSync(OUT, { recursive: true, force: true });
  mkdirSync(OUT, { recursive: true });

  emit();

  const main = join(OUT, "main.js");
  writeFileSync(main, "#!/usr/bin/env node\n" + readFileSync(main, "utf8"));
  chmodSync(main, 0o755);

  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  writeFileSync(join(OUT, "README.md"), readme.replaceAll(`"${JSR_NAME}"`, `"${NAME}"`));
  copyFileSync(join(ROOT, "LICENSE"), join(OUT, "LICENSE"));

  const files = ["mod.js", "mod.d.ts", "main.js", "main.d.ts", "README.md", "LICENSE"];
  const packageJson = {
    name: NAME,
    version: config.version,
    description:
      "An HTTP/1.1 server written from scratch on raw TCP sockets, for any fetch handler " +
      "(Request => Response)",
    keywords: ["http", "http1.1", "server", "fetch", "request", "response", "tcp", "rfc9112"],
    license: config.license,
    type: "module",
    exports: { ".": { types: "./mod.d.ts", default: "./mod.js" } },
    bin: { brick: "./main.js" },
    files,
    engines: { node: ">=20" },
  };
  writeFileSync(join(OUT, "package.json"), JSON.stringify(packageJson, null, 2) + "\n");
  checkDeclarations(files.filter((file) => file.endsWith(".d.ts")).map((file) => join(OUT, file)));

  const size = files.reduce((sum, file) => sum + statSync(join(OUT, file)).size, 0);
  const tests = TEST_SOURCES.map((file) => file.replace(/\.ts$/, ".js")).join(", ");
  return `Built npm/: ${NAME}@${config.version}, ${files.length} files ` +
    `(${(size / 1024).toFixed(0)} KiB unpacked), tests ${tests}`;
}

/** Emits JavaScript for every source and declarations for the package sources. */
function emit(): void {
  const sources = [...PACKAGE_SOURCES, ...TEST_SOURCES].map((file) => join(ROOT, file));
  const host = ts.createCompilerHost(COMPILER_OPTIONS);
  const declarationsWanted = new Set(
    PACKAGE_SOURCES.map((file) => join(OUT, file.replace(/\.ts$/, ".d.ts"))),
  );
  const program = ts.createProgram({ rootNames: sources, options: COMPILER_OPTIONS, host });
  const written: string[] = [];
  const result = program.emit(undefined, (name, text) => {
    const fileName = resolve(name); // TypeScript writes "/" on Windows too
    if (fileName.endsWith(".d.ts") && !declarationsWanted.has(fileName)) return;
    // Doc examples import the JSR name; on npm the package is `brickhttp`.
    let output = text.replaceAll(`from "${JSR_NAME}"`, `from "${NAME}"`);
    // `Server extends AsyncDisposable`: the type is in TypeScript's
    // esnext.disposable library, which a consumer targeting ES2022 lacks.
    if (fileName.endsWith(".d.ts") && /\bAsyncDisposable\b/.test(output)) {
      output = `/// <reference lib="esnext.disposable" />\n${output}`;
    }
    mkdirSync(join(fileName, ".."), { recursive: true });
    writeFileSync(fileName, output);
    written.push(fileName);
  });
  // Syntax errors and declaration emit errors still count; type errors are `deno check`'s.
  const diagnostics = [...program.getSyntacticDiagnostics(), ...result.diagnostics];
  if (diagnostics.length > 0 || result.emitSkipped) {
    throw new Error(`Emit failed:\n${format(diagnostics)}`);
  }
  const expected = [
    ...sources.map((file) => join(OUT, basename(file, ".ts") + ".js")),
    ...declarationsWanted,
  ];
  const missing = expected.filter((file) => !written.includes(file));
  if (missing.length > 0) {
    throw new Error(`Emit failed: nothing written for ${missing.join(", ")}`);
  }
  // A module that the sources import but the package does not list would be
  // missing from the tarball.
  const unlisted = written.filter((file) => !expected.includes(file));
  if (unlisted.length > 0) {
    throw new Error(
      `The sources import files that scripts/build_npm.ts does not package: ` +
        `${unlisted.join(", ")}; add them to PACKAGE_SOURCES or TEST_SOURCES`,
    );
  }
}

/**
 * Type-checks the emitted declarations as a Node consumer would, with only the
 * ES and DOM libraries: a `Deno` type leaking into the public API fails here.
 */
function checkDeclarations(files: string[]): void {
  const program = ts.createProgram({ rootNames: files, options: CONSUMER_OPTIONS });
  const diagnostics = ts.getPreEmitDiagnostics(program);
  if (diagnostics.length > 0) {
    throw new Error(
      `The emitted declarations do not type-check without Deno's types:\n${format(diagnostics)}`,
    );
  }
}

function format(diagnostics: readonly ts.Diagnostic[]): string {
  return ts.formatDiagnostics(diagnostics, {
    getCanonicalFileName: (fileName) => fileName,
    getCurrentDirectory: () => ROOT,
    getNewLine: () => "\n",
  });
}
