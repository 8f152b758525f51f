/**
 * Builds the npm package `brickhttp` into `npm/` from the same source that
 * Deno runs: ESM JavaScript and `.d.ts` files for every entry point in
 * deno.json `exports` and for `main.ts` with its modules in `cli/` (the
 * `brick` command), a `package.json` whose `exports` mirror deno.json's,
 * README.md and LICENSE.
 *
 * ```sh
 * deno task build:npm
 * cd npm && npm pack                 # the package
 * node --test npm/*_test.js          # the test suites, against the build on Node
 * ```
 *
 * The emit uses the TypeScript compiler API (`npm:typescript`, pinned) without
 * type checking: `deno check` checks the source, with Deno's types, and the
 * runtime guards keep Deno's APIs off the Node path. What this script checks
 * instead is what npm users see: that the emitted `.d.ts` files type-check on
 * their own, with no `Deno` types around.
 *
 * The test files (`*_test.ts`, `_test*.ts`, `examples/*.ts`) are emitted too,
 * as plain JavaScript beside the package files, `testdata/` is copied, and the
 * npm packages the tests import (deno.json `imports`) are installed into
 * `npm/node_modules`, so that `node --test` and `bun test` run the same suites
 * against the build. None of them is listed in the package's `files`.
 *
 * @module
 */

import ts from "typescript";
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { execFileSync } from "node:child_process";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const OUT = join(ROOT, "npm");

/**
 * The package's modules: the entry points from deno.json `exports`, the CLI
 * (main.ts and cli/), and the internal modules they import (`./_upstream.ts`,
 * `./http2.ts`, …).
 */
function packageSources(config: DenoJson): string[] {
  const entries = Object.values(config.exports).map((path) => path.replace(/^\.\//, ""));
  const cli = inFolder(CLI).filter((file) => !isTestFile(file));
  const found = new Set([...entries, "main.ts", ...cli]);
  for (const file of found) {
    const text = readFileSync(join(ROOT, file), "utf8");
    for (
      const [, specifier] of text.matchAll(/^(?:import|export)[^"']*["'](\.\.?\/[^"']+\.ts)["']/gm)
    ) {
      const imported = relative(ROOT, resolve(ROOT, file, "..", specifier));
      if (!isTestFile(imported)) found.add(imported);
    }
  }
  return [...found];
}

/** The folder of the CLI's modules, beside main.ts. */
const CLI = "cli";

/** Whether a source file is a test or a test helper: `*_test.ts` or `_test*.ts`. */
function isTestFile(path: string): boolean {
  const file = path.slice(path.lastIndexOf("/") + 1);
  return file.endsWith("_test.ts") || (file.startsWith("_test") && file.endsWith(".ts"));
}

/** The `.ts` files of a folder below the project, as `folder/file.ts`, sorted. */
function inFolder(folder: string): string[] {
  return existsSync(join(ROOT, folder))
    ? readdirSync(join(ROOT, folder)).filter((file) => file.endsWith(".ts")).sort()
      .map((file) => `${folder}/${file}`)
    : [];
}

/**
 * Test sources, emitted as JavaScript only for `node --test`: every top-level
 * `*_test.ts` and `_test*.ts` and those of cli/, the examples the tests
 * import, and the hardening tests' helpers and target server
 * (`scripts/hardening/`).
 */
function testSources(): string[] {
  const topLevel = readdirSync(ROOT).filter(isTestFile);
  return [
    ...topLevel.sort(),
    ...inFolder(CLI).filter(isTestFile),
    ...inFolder("examples"),
    ...inFolder("scripts/hardening"),
  ];
}

/** Fixtures the tests read at run time, copied as they are. */
const TEST_DATA = "testdata";

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
  exports: Record<string, string>;
  imports: Record<string, string>;
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
  const sources = packageSources(config);
  const tests = testSources();
  cleanOutput();

  emit(sources, tests);
  if (existsSync(join(ROOT, TEST_DATA))) {
    cpSync(join(ROOT, TEST_DATA), join(OUT, TEST_DATA), { recursive: true });
  }
  const testPackages = installTestPackages(config);

  const main = join(OUT, "main.js");
  writeFileSync(main, "#!/usr/bin/env node\n" + readFileSync(main, "utf8"));
  chmodSync(main, 0o755);

  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  writeFileSync(join(OUT, "README.md"), readme.replaceAll(`"${JSR_NAME}"`, `"${NAME}"`));
  copyFileSync(join(ROOT, "LICENSE"), join(OUT, "LICENSE"));

  const files = [
    ...sources.flatMap((file) => [file.replace(/\.ts$/, ".js"), file.replace(/\.ts$/, ".d.ts")]),
    "README.md",
    "LICENSE",
  ];
  const packageJson = {
    name: NAME,
    version: config.version,
    description:
      "An HTTP/1.1 server written from scratch on raw TCP sockets, for any fetch handler " +
      "(Request => Response)",
    keywords: ["http", "http1.1", "server", "fetch", "request", "response", "tcp", "rfc9112"],
    license: config.license,
    type: "module",
    exports: packageExports(config),
    bin: { brick: "./main.js" },
    files,
    engines: { node: ">=20.16" },
  };
  writeFileSync(join(OUT, "package.json"), JSON.stringify(packageJson, null, 2) + "\n");
  checkDeclarations(files.filter((file) => file.endsWith(".d.ts")).map((file) => join(OUT, file)));

  const size = files.reduce((sum, file) => sum + statSync(join(OUT, file)).size, 0);
  const testFiles = tests.map((file) => file.replace(/\.ts$/, ".js")).join(", ");
  return `Built npm/: ${NAME}@${config.version}, ${files.length} files ` +
    `(${(size / 1024).toFixed(0)} KiB unpacked), tests ${testFiles}` +
    (testPackages.length > 0 ? `, test packages ${testPackages.join(", ")}` : "");
}

/** Empties `npm/`, keeping `node_modules` (the test packages) for the next build. */
function cleanOutput(): void {
  mkdirSync(OUT, { recursive: true });
  for (const entry of readdirSync(OUT)) {
    if (entry !== "node_modules") rmSync(join(OUT, entry), { recursive: true, force: true });
  }
}

/** deno.json `exports` as package.json `exports`: `./mod.ts` → types and JavaScript. */
function packageExports(config: DenoJson): Record<string, { types: string; default: string }> {
  return Object.fromEntries(
    Object.entries(config.exports).map(([key, path]) => [key, {
      types: path.replace(/\.ts$/, ".d.ts"),
      default: path.replace(/\.ts$/, ".js"),
    }]),
  );
}

/**
 * Installs the npm packages that the tests import (deno.json `imports` other
 * than the build's own TypeScript and type packages) into `npm/node_modules`,
 * so that the emitted tests resolve them on Node and Bun as Deno does through
 * the import map. Not dependencies of the package: nothing in it imports them.
 */
function installTestPackages(config: DenoJson): string[] {
  const wanted = Object.entries(config.imports)
    .filter(([name, target]) =>
      target.startsWith("npm:") && name !== "typescript" && !name.startsWith("@types/")
    )
    .map(([name, target]) => ({ name, spec: target.slice("npm:".length) }));
  const missing = wanted.filter(({ name, spec }) => installedVersion(name) !== versionOf(spec));
  if (missing.length > 0) {
    execFileSync("npm", [
      "install",
      "--no-save",
      "--no-package-lock",
      "--ignore-scripts",
      "--no-audit",
      "--no-fund",
      "--loglevel=error",
      ...missing.map(({ spec }) => spec),
    ], { cwd: OUT, stdio: ["ignore", "ignore", "inherit"] });
  }
  return wanted.map(({ spec }) => spec);
}

function installedVersion(name: string): string | null {
  const file = join(OUT, "node_modules", name, "package.json");
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as DenoJson).version : null;
}

function versionOf(spec: string): string {
  return spec.slice(spec.lastIndexOf("@") + 1);
}

/** Emits JavaScript for every source and declarations for the package sources. */
function emit(packageFiles: string[], testFiles: string[]): void {
  const sources = [...packageFiles, ...testFiles].map((file) => join(ROOT, file));
  const host = ts.createCompilerHost(COMPILER_OPTIONS);
  const declarationsWanted = new Set(
    packageFiles.map((file) => join(OUT, file.replace(/\.ts$/, ".d.ts"))),
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
    ...sources.map((file) => join(OUT, relative(ROOT, file).replace(/\.ts$/, ".js"))),
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
        `${unlisted.join(", ")}; export them in deno.json or name them *_test.ts`,
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
