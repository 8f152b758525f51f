/**
 * What brick serves: an app module (its default export is a fetch handler),
 * a folder of static files, or `Hello, World!`. Decides which from the
 * command line and the file system, imports an app, and builds the handler.
 *
 * @module
 */

import { type Stats, statSync } from "node:fs";
import { extname, posix, relative, resolve, sep } from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";
import { serveDir, type ServeDirOptions } from "../file_server.ts";
import type { Handler } from "../mod.ts";
import { brickCommand, READ_FILES, shellQuote } from "./command.ts";
import { CliError } from "./errors.ts";
import { type Flags, FOLDER_FLAGS, UsageError } from "./flags.ts";
import { withResponseHeaders } from "./headers.ts";

/** Deno's API where this runs on Deno; undefined on Node and Bun. */
const deno: typeof Deno | undefined = (globalThis as { Deno?: typeof Deno }).Deno;
/** Whether this runs on Bun. */
const bun = typeof (process.versions as { bun?: string }).bun === "string";

/** What brick serves, once the command line has been checked against the file system. */
export type Target =
  | { kind: "hello" }
  | {
    /** An app module, or a folder of static files. */
    kind: "app" | "folder";
    /** The absolute path. */
    path: string;
    /** The path as the command line gave it, for messages. */
    name: string;
  };

/** The file name extensions of modules brick imports as apps. */
const APP_EXTENSIONS = [".ts", ".mts", ".tsx", ".js", ".mjs", ".cjs", ".jsx"];

/** The ones that are TypeScript, which Node before 22.18 cannot import. */
const TYPESCRIPT_EXTENSIONS = [".ts", ".mts", ".tsx"];

/**
 * Decides what to serve: the module given with `--app`, the folder given with
 * `--root`, or the positional path, which is an app when it is a file and a
 * folder when it is a folder. Without any, `Hello, World!`.
 *
 * @param flags The parsed flags.
 * @returns What to serve, with its absolute path.
 * @throws {CliError} With exit code 2 when the path does not exist, is the
 * wrong kind (a folder for `--app`, a file for `--root`), or is a file that is
 * not a module.
 * @throws {UsageError} When a folder-only flag such as `--dotfiles` comes
 * without a folder.
 *
 * @example Usage
 * ```ts ignore
 * import { parseFlags } from "./flags.ts";
 * import { resolveTarget } from "./app.ts";
 * const target = resolveTarget(parseFlags(["./public"]));
 * console.log(target.kind); // "folder", when ./public is one
 * ```
 */
export function resolveTarget(flags: Flags): Target {
  const name = flags.app ?? flags.root ?? flags.path;
  if (name === undefined) {
    checkFolderFlags(flags, flags.proxy.length > 0 ? "a proxy" : "Hello, World!");
    return { kind: "hello" };
  }
  const path = resolve(name);
  const isFolder = statPath(name, path).isDirectory();
  const kind = flags.app !== undefined
    ? "app"
    : flags.root !== undefined || isFolder
    ? "folder"
    : "app";
  const quoted = shellQuote(name);
  if (kind === "folder" && !isFolder) {
    const hint = `to serve it as an app: --app ${quoted}`;
    throw new CliError(`Cannot serve "${name}" as a folder: it is a file (${hint})`, 2);
  }
  if (kind === "app" && isFolder) {
    const hint = `to serve its files: --root ${quoted}`;
    throw new CliError(`Cannot serve "${name}" as an app: it is a folder (${hint})`, 2);
  }
  if (kind === "app") {
    if (!APP_EXTENSIONS.includes(extname(path).toLowerCase())) {
      throw new CliError(
        `Cannot serve "${name}": an app module's name ends in ${APP_EXTENSIONS.join(", ")}; ` +
          "to serve static files, give the folder that holds them",
        2,
      );
    }
    checkFolderFlags(flags, "an app");
  }
  return { kind, path, name };
}

/** `statSync`, with the reasons it fails put in words. */
function statPath(name: string, path: string): Stats {
  try {
    return statSync(path);
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code;
    if (code === "ENOENT" || code === "ENOTDIR") {
      throw new CliError(`Cannot find "${name}": no such file or folder (${path})`, 2);
    }
    const detail = error instanceof Error ? error.message : String(error);
    throw new CliError(`Cannot read "${name}": ${detail}`, 2, { cause: error });
  }
}

/** Rejects the folder-only flags when brick serves something else. */
function checkFolderFlags(flags: Flags, serving: string): void {
  const given = {
    dotfiles: flags.dotfiles,
    "no-listing": !flags.listing,
    "no-compress": !flags.compress,
  };
  const flag = FOLDER_FLAGS.find((name) => given[name]);
  if (flag !== undefined) {
    throw new UsageError(`Flag "--${flag}" applies to a folder only, and brick serves ${serving}`);
  }
}

/** Whether this runtime imports TypeScript: Deno and Bun do, Node from 22.18 on. */
function importsTypeScript(): boolean {
  if (deno || bun) return true;
  return Boolean((process as { features?: { typescript?: unknown } }).features?.typescript);
}

/**
 * Imports an app module and returns its fetch handler.
 *
 * @param target The app to load.
 * @param args The original arguments, to suggest a command to run instead.
 * @throws {CliError} With exit code 2 for TypeScript on a Node that cannot run
 * it, or a module without a fetch handler; with exit code 1 when the module
 * throws while loading.
 */
async function loadApp(target: { path: string; name: string }, args: string[]): Promise<Handler> {
  const { path, name } = target;
  if (TYPESCRIPT_EXTENSIONS.includes(extname(path).toLowerCase()) && !importsTypeScript()) {
    const js = shellQuote(name.replace(/\.mts$/i, ".mjs").replace(/\.tsx?$/i, ".js"));
    throw new CliError(
      `Cannot import "${name}": Node ${process.version} does not run TypeScript ` +
        "(Deno, Bun and Node 22.18 or later do)\n" +
        `Run it with Bun instead: ${["bunx --bun brick", ...args.map(shellQuote)].join(" ")}\n` +
        `Or compile it to ${js} and run: ${brickCommand(READ_FILES)} ${js}`,
      2,
    );
  }
  let module: Record<string, unknown>;
  try {
    module = await import(`./${fromThisFolder(path)}`);
  } catch (error) {
    const message = `Cannot load "${name}": it threw while loading\n${describeLoadError(error)}`;
    throw new CliError(message, 1, { cause: error });
  }
  return handlerFromModule(module, name);
}

/**
 * The app's URL relative to this module's folder (percent-encoded, as a URL
 * path; on Bun, which resolves such specifiers as file paths, the plain path). brick imports it as `./…`, a specifier Deno's module graph and
 * `deno publish` can analyze (an import of an arbitrary URL is reported as an
 * unanalyzable dynamic import); it resolves to the same file.
 *
 * @throws {CliError} With exit code 2 when brick itself was loaded from a
 * remote URL: a remote module cannot import a local file.
 */
function fromThisFolder(path: string): string {
  const here = new URL(".", import.meta.url);
  if (here.protocol !== "file:") {
    throw new CliError(
      `Cannot load "${path}" from brick at ${import.meta.url}: a remote module cannot import ` +
        "a local file\nRun brick from a clone or from the npm package instead",
      2,
    );
  }
  // Bun resolves a relative specifier as a file path, not a URL: no percent-encoding there.
  if ("Bun" in globalThis) return relative(fileURLToPath(here), path).split(sep).join("/");
  return posix.relative(here.pathname, pathToFileURL(path).pathname);
}

/**
 * What a module threw while loading, with where: the stack of an Error, or
 * for Bun's syntax errors (a BuildMessage, which is no Error) the message and
 * its file position.
 */
function describeLoadError(error: unknown): string {
  if (error instanceof Error) return error.stack ?? String(error);
  const position = (error as { position?: { file?: unknown; line?: unknown; column?: unknown } })
    ?.position;
  const at = typeof position?.file === "string" && typeof position.line === "number"
    ? `\n    at ${position.file}:${position.line}:${position.column ?? 0}`
    : "";
  return String(error) + at;
}

/** The example printed under a module without a fetch handler. */
const APP_EXAMPLE =
  'Export a fetch handler: export default { fetch(request) { return new Response("Hi") } }';

/**
 * Takes the fetch handler from an app module's exports: the default export
 * when it is a function `(request, info) => Response`, or when it is an
 * object with a `fetch` method (called with the object as `this`, as
 * `deno serve` does), such as a Hono app.
 *
 * @param module The module namespace object, as `import()` resolves it.
 * @param name The module's name for messages, such as `"app.ts"`.
 * @returns The handler, which passes `info` on to the app as the server gives it.
 * @throws {CliError} With exit code 2 when the default export is missing or is
 * not a handler; the message says what was found.
 *
 * @example Usage
 * ```ts
 * import { handlerFromModule } from "./app.ts";
 * const module = { default: { fetch: () => new Response("Hi") } };
 * const handler = handlerFromModule(module, "app.ts");
 * console.assert(typeof handler === "function");
 * ```
 */
export function handlerFromModule(
  module: Record<string, unknown>,
  name: string,
): (request: Request, info: unknown) => Response | Promise<Response> {
  const app = module.default;
  if (typeof app === "function") {
    if (/^class\b/.test(Function.prototype.toString.call(app))) {
      throw new CliError(
        `Cannot serve "${name}": its default export is a class, not a fetch handler ` +
          `(export an instance instead: export default new ${app.name || "App"}())\n` +
          APP_EXAMPLE,
        2,
      );
    }
    return app as (request: Request, info: unknown) => Response | Promise<Response>;
  }
  if (typeof app === "object" && app !== null && typeof Reflect.get(app, "fetch") === "function") {
    const fetch = Reflect.get(app, "fetch") as (...args: unknown[]) => Response | Promise<Response>;
    return (request, info) => fetch.call(app, request, info);
  }
  if (!("default" in module)) {
    const names = Object.keys(module);
    const found = names.length === 0 ? "it exports nothing" : `its exports: ${names.join(", ")}`;
    const hint = typeof module.fetch === "function"
      ? "Export its fetch function as the default: export default { fetch }"
      : APP_EXAMPLE;
    throw new CliError(`Cannot serve "${name}": it has no default export (${found})\n${hint}`, 2);
  }
  throw new CliError(
    `Cannot serve "${name}": its default export is ${describeValue(app)}, ` +
      `not a fetch handler\n${APP_EXAMPLE}`,
    2,
  );
}

/** Names what a value is, for an error message: "a string", "null", "an object with …". */
function describeValue(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") {
    const keys = Object.keys(value);
    return keys.length === 0
      ? "an object without a fetch method"
      : `an object without a fetch method (its keys: ${keys.join(", ")})`;
  }
  const type = typeof value;
  return `${/^[aeiou]/.test(type) ? "an" : "a"} ${type}`;
}

/**
 * Builds the handler for what brick serves.
 *
 * @param target What to serve.
 * @param flags The parsed flags.
 * @param args The original arguments, for hints.
 * @returns The request handler.
 */
export async function createHandler(
  target: Target,
  flags: Flags,
  args: string[],
): Promise<Handler> {
  switch (target.kind) {
    case "hello":
      return helloWorld;
    case "app":
      return withResponseHeaders(await loadApp(target, args), flags.headers, flags.cors);
    case "folder": {
      const options: ServeDirOptions = {
        root: target.path,
        showDirListing: flags.listing,
        showDotfiles: flags.dotfiles,
        enableCors: flags.cors,
        headers: flags.headers,
        compress: flags.compress,
      };
      return (request) => serveDir(request, options);
    }
  }
}

const HELLO = "Hello, World!";

/** Frozen: brick reads a frozen record of fields once, not for every response. */
const HELLO_INIT = { headers: Object.freeze({ "content-type": "text/plain; charset=utf-8" }) };

/** The page served without an app or folder; brick adds its Content-Length. */
function helloWorld(): Response {
  return new Response(HELLO, HELLO_INIT);
}
