/**
 * The `brick` command line: serves an app module, a folder of static files,
 * or `Hello, World!` on every path; prints where it listens, and writes an
 * access log line per request in Common Log Format.
 *
 * ```sh
 * deno run --allow-net main.ts                            # Hello, World! on port 8888
 * deno run --allow-net --allow-read main.ts app.ts        # app.ts's default export
 * deno run --allow-net --allow-read main.ts ./public      # the files in ./public
 * deno run --allow-net main.ts -p 0 -H 127.0.0.1 --verbose
 * deno run --allow-net --allow-sys main.ts                # also lists the Network URLs
 * npx brick --port 0 app.js                               # the npm package, on Node
 * ```
 *
 * An app is a module whose default export is a fetch handler: a function
 * `(request, info) => Response`, or an object with a `fetch(request, info)`
 * method, as `deno serve` and Bun expect (a Hono app is one). A folder is
 * served by {@linkcode serveDir}: index.html, directory listings, ranges,
 * ETags and compression.
 *
 * The same file runs on Deno, Node (as the npm package's `brick` command) and
 * Bun: it uses `node:` modules, and Deno's permission API only where `Deno`
 * exists.
 *
 * Flags: `--port/-p`, `--host/-H`, `--app <module>`, `--root <folder>`,
 * `--dotfiles`, `--no-listing`, `--no-compress`, `--cors`,
 * `--header "Name: value"` (repeatable), `--verbose/-v` (print each request
 * head as received), `--quiet/-q` (no access log), `--help/-h`,
 * `--version/-V`.
 *
 * Exit codes: `0` after a graceful shutdown (SIGINT or SIGTERM) or `--help` /
 * `--version`; `1` when the server cannot start or the app module throws while
 * loading; `2` on a bad flag, a missing file, a module without a fetch
 * handler, or a missing `--allow-read`; `130` when a second SIGINT or SIGTERM
 * cuts the graceful shutdown short.
 *
 * @module
 */

import { realpathSync, type Stats, statSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { extname, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { serveDir, type ServeDirOptions } from "./file_server.ts";
import { type Handler, serve, type ServeInfo, type Server, VERSION } from "./mod.ts";

/** The port used when `--port` is not given. */
export const DEFAULT_PORT = 8888;
/** The interface used when `--host` is not given: all IPv4 interfaces. */
export const DEFAULT_HOST = "0.0.0.0";

/** Deno's API where this runs on Deno; undefined on Node and Bun. */
const deno: typeof Deno | undefined = (globalThis as { Deno?: typeof Deno }).Deno;
/** Whether this runs on Bun. */
const bun = typeof (process.versions as { bun?: string }).bun === "string";

/**
 * How this runtime starts brick, for the usage line and for hints. On Deno it
 * names the permissions: `--allow-net` always, `--allow-read` when brick
 * serves files. On Node and Bun it is the npm package's `brick` command,
 * through `npx` when npx started it.
 */
function brickCommand(read: boolean): string {
  if (deno) return `deno run --allow-net${read ? " --allow-read" : ""} main.ts`;
  return process.env.npm_command === "exec" ? "npx brick" : "brick";
}

/** The one-line usage printed under a flag error and at the top of `--help`. */
export const USAGE: string = `Usage: ${brickCommand(true)} [options] [<app module> | <folder>]`;

/** The flags `brick` understands, after parsing and validation. */
export interface Flags {
  /** Port to listen on; `0` lets the system pick a free one. */
  port: number;
  /** Interface to listen on. */
  host: string;
  /** The app module given with `--app`. */
  app: string | undefined;
  /** The folder given with `--root`. */
  root: string | undefined;
  /** The argument without a flag: an app module or a folder, told apart by {@linkcode resolveTarget}. */
  path: string | undefined;
  /** Serve files and folders whose names start with a dot. */
  dotfiles: boolean;
  /** List a folder's files when it has no index.html. */
  listing: boolean;
  /** Compress file responses when the client accepts it. */
  compress: boolean;
  /** Add CORS headers to every response. */
  cors: boolean;
  /** Header fields from `--header`, as name and value, in the order given. */
  headers: [name: string, value: string][];
  /** Print each raw request head as received. */
  verbose: boolean;
  /** Do not print the access log. */
  quiet: boolean;
  /** Print the help and exit. */
  help: boolean;
  /** Print the version and exit. */
  version: boolean;
}

/** A command line the user has to correct; `main` answers it with exit code 2. */
export class UsageError extends Error {
  /**
   * Creates a usage error.
   *
   * @param message What is wrong with the command line, in sentence case.
   */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/**
 * A reason the CLI cannot start that is not a malformed command line: a
 * missing file, an app module without a fetch handler, a missing permission.
 * `main` prints its message and exits with its `exitCode`.
 */
export class CliError extends Error {
  /**
   * Creates a CLI error.
   *
   * @param message What went wrong and what to do about it; may span lines.
   * @param exitCode The process exit code: `2` for something the user can fix
   * on the command line or in the module's exports, `1` otherwise.
   * @param options The error's cause, if any.
   */
  constructor(message: string, readonly exitCode: 1 | 2, options?: ErrorOptions) {
    super(message, options);
    this.name = "CliError";
  }
}

/** Each option once: parseArgs config, help text and value name. */
const OPTIONS = {
  port: {
    type: "string",
    short: "p",
    value: "<port>",
    help: `Port to listen on, 0 picks a free one (default: ${DEFAULT_PORT})`,
  },
  host: {
    type: "string",
    short: "H",
    value: "<host>",
    help: `Interface to listen on (default: ${DEFAULT_HOST}, all interfaces)`,
  },
  app: { type: "string", value: "<module>", help: "Serve this module's default export" },
  root: { type: "string", value: "<folder>", help: "Serve the files in this folder" },
  dotfiles: { type: "boolean", help: "Folder: also serve names that start with a dot" },
  "no-listing": { type: "boolean", help: "Folder: 404 for a folder without index.html" },
  "no-compress": { type: "boolean", help: "Folder: do not compress responses" },
  cors: { type: "boolean", help: "Allow cross-origin requests (Access-Control-Allow-Origin: *)" },
  header: {
    type: "string",
    value: "<field>",
    help: 'Add "Name: value" to every response, repeatable',
  },
  verbose: { type: "boolean", short: "v", help: "Print each request head as received" },
  quiet: { type: "boolean", short: "q", help: "Do not print the access log" },
  help: { type: "boolean", short: "h", help: "Print this help and exit" },
  version: { type: "boolean", short: "V", help: "Print the version and exit" },
} as const;

type OptionName = keyof typeof OPTIONS;

/** Where each boolean flag is recorded in {@linkcode Flags}, and the value it sets. */
const BOOLEAN_FLAGS = {
  dotfiles: ["dotfiles", true],
  "no-listing": ["listing", false],
  "no-compress": ["compress", false],
  cors: ["cors", true],
  verbose: ["verbose", true],
  quiet: ["quiet", true],
  help: ["help", true],
  version: ["version", true],
} as const satisfies Record<string, [keyof Flags, boolean]>;

/** The flags that only mean something when brick serves a folder. */
const FOLDER_FLAGS = ["dotfiles", "no-listing", "no-compress"] as const;

/**
 * Parses and validates the command line arguments. It does not look at the
 * file system: {@linkcode resolveTarget} does that.
 *
 * @param args The arguments after the script name, as in `process.argv.slice(2)`.
 * @returns The flags, with defaults applied.
 * @throws {UsageError} On an unknown flag, a missing or malformed value, a
 * second positional argument, or an app and a folder at once.
 *
 * @example Usage
 * ```ts
 * import { parseFlags } from "./main.ts";
 * const flags = parseFlags(["-p", "0", "--host", "127.0.0.1", "public", "--cors"]);
 * console.assert(flags.port === 0 && flags.path === "public" && flags.cors);
 * ```
 */
export function parseFlags(args: string[]): Flags {
  const { tokens } = parseArgs({
    args,
    options: OPTIONS,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const flags: Flags = {
    port: DEFAULT_PORT,
    host: DEFAULT_HOST,
    app: undefined,
    root: undefined,
    path: undefined,
    dotfiles: false,
    listing: true,
    compress: true,
    cors: false,
    headers: [],
    verbose: false,
    quiet: false,
    help: false,
    version: false,
  };
  for (const token of tokens) {
    if (token.kind === "option-terminator") continue;
    if (token.kind === "positional") {
      if (flags.path !== undefined) {
        throw new UsageError(
          `Unexpected argument "${token.value}": brick serves one app module or one folder`,
        );
      }
      flags.path = token.value;
      continue;
    }
    if (!Object.hasOwn(OPTIONS, token.name)) {
      throw new UsageError(`Unknown flag "${token.rawName}"`);
    }
    const name = token.name as OptionName;
    if (OPTIONS[name].type === "boolean") {
      if (token.value !== undefined) {
        throw new UsageError(`Flag "${token.rawName}" takes no value`);
      }
      const [field, value] = BOOLEAN_FLAGS[name as keyof typeof BOOLEAN_FLAGS];
      (flags[field] as boolean) = value;
      continue;
    }
    const value = token.value;
    // `--port --quiet` would otherwise take "--quiet" as the port.
    if (value === undefined || (!token.inlineValue && /^-[^\d]/.test(value))) {
      throw new UsageError(`Missing value for "${token.rawName}"`);
    }
    switch (name) {
      case "port":
        flags.port = parsePort(value);
        break;
      case "host":
        if (value === "") throw new UsageError(`Invalid host "": expected a name or an address`);
        flags.host = value;
        break;
      case "app":
      case "root":
        if (value === "") throw new UsageError(`Missing value for "${token.rawName}"`);
        flags[name] = value;
        break;
      case "header":
        flags.headers.push(parseHeaderFlag(value));
        break;
    }
  }
  checkOneTarget(flags);
  return flags;
}

/** Reads a port number strictly: digits only, 0 to 65535. */
function parsePort(value: string): number {
  const port = /^\d{1,5}$/.test(value) ? Number(value) : NaN;
  if (!(port <= 65535)) {
    throw new UsageError(`Invalid port "${value}": expected a number from 0 to 65535`);
  }
  return port;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// Visible ASCII, spaces and tabs inside, and obs-text; no control characters.
const FIELD_VALUE = /^(?:[\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?$/;

/**
 * Reads a `--header` value, `Name: value`, into a name and a value with the
 * whitespace around the value trimmed. An empty value is allowed, as in HTTP.
 */
function parseHeaderFlag(text: string): [string, string] {
  const colon = text.indexOf(":");
  const name = colon === -1 ? "" : text.slice(0, colon);
  const value = text.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
  if (colon === -1 || !TOKEN.test(name) || !FIELD_VALUE.test(value)) {
    const why = colon === -1
      ? 'expected "Name: value"'
      : !TOKEN.test(name)
      ? "the name must be letters, digits and !#$%&'*+-.^_`|~, with no spaces"
      : "the value must not contain control characters";
    throw new UsageError(`Invalid header ${JSON.stringify(text)}: ${why}`);
  }
  return [name, value];
}

/** Rejects a command line that names more than one app or folder. */
function checkOneTarget(flags: Flags): void {
  const given = [
    flags.path === undefined ? "" : `"${flags.path}"`,
    flags.app === undefined ? "" : `--app "${flags.app}"`,
    flags.root === undefined ? "" : `--root "${flags.root}"`,
  ].filter((text) => text !== "");
  if (given.length > 1) {
    throw new UsageError(
      `Cannot serve ${given.join(" and ")} at once: brick serves one app module or one folder`,
    );
  }
}

/**
 * Formats the `--help` text: the usage line, the options, aligned, and
 * examples that use this runtime's command.
 *
 * @returns The help text, without a trailing newline.
 *
 * @example Usage
 * ```ts
 * import { formatHelp } from "./main.ts";
 * console.log(formatHelp());
 * ```
 */
export function formatHelp(): string {
  const rows = Object.entries(OPTIONS).map(([name, option]) => {
    const short = "short" in option ? `-${option.short}, ` : "    ";
    const value = "value" in option ? ` ${option.value}` : "";
    return [`${short}--${name}${value}`, option.help];
  });
  const width = Math.max(...rows.map(([left]) => left.length));
  const hello = brickCommand(false);
  const files = brickCommand(true);
  return [
    `brick ${VERSION}: a small HTTP/1.1 server`,
    "",
    USAGE,
    "",
    "Serves an app module (its default export is a fetch handler: a function",
    "(request, info) => Response, or an object with a fetch method, such as a",
    "Hono app), or the files in a folder, or Hello, World! when given neither.",
    "A path names an app when it is a file and a folder when it is a folder.",
    "",
    "Options:",
    ...rows.map(([left, help]) => `  ${left.padEnd(width)}  ${help}`),
    "",
    "Examples:",
    "  # Hello, World! on http://localhost:8888/",
    `  ${hello}`,
    '  # An app: export default { fetch(request) { return new Response("Hi") } }',
    `  ${files} app.${deno || bun ? "ts" : "js"}`,
    "  # The files in ./public on port 8080, for local clients only, with CORS",
    `  ${files} ./public --port 8080 --host 127.0.0.1 --cors`,
    "  # Every response with a header field; folders without index.html give 404",
    `  ${files} dist --header "Cache-Control: no-store" --no-listing`,
  ].join("\n");
}

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
 * import { parseFlags, resolveTarget } from "./main.ts";
 * const target = resolveTarget(parseFlags(["./public"]));
 * console.log(target.kind); // "folder", when ./public is one
 * ```
 */
export function resolveTarget(flags: Flags): Target {
  const name = flags.app ?? flags.root ?? flags.path;
  if (name === undefined) {
    checkFolderFlags(flags, "Hello, World!");
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
        `Or compile it to ${js} and run: ${brickCommand(true)} ${js}`,
      2,
    );
  }
  let module: Record<string, unknown>;
  try {
    module = await import(pathToFileURL(path).href);
  } catch (error) {
    const message = `Cannot load "${name}": it threw while loading\n${describeLoadError(error)}`;
    throw new CliError(message, 1, { cause: error });
  }
  return handlerFromModule(module, name);
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
 * import { handlerFromModule } from "./main.ts";
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
 * Wraps an app's handler for `--header` and `--cors`. Every response gets the
 * `--header` fields, replacing the app's own, and with `--cors`
 * `Access-Control-Allow-Origin: *` unless the app set the field itself. A
 * CORS preflight that the app does not answer with a 2xx status is answered
 * `204`, allowing the method and the fields that it asks for. Bodies are
 * passed on untouched, streams included.
 */
function withResponseHeaders(handler: Handler, fields: [string, string][], cors: boolean): Handler {
  if (fields.length === 0 && !cors) return handler;
  const apply = (headers: Headers) => {
    if (cors && !headers.has("access-control-allow-origin")) {
      headers.set("access-control-allow-origin", "*");
    }
    for (const [name, value] of fields) headers.set(name, value);
  };
  const addTo = (response: Response, request: Request): Response => {
    // An interim answer such as a 101 for an upgrade is handed on as it is.
    if (response.status < 200) return response;
    if (cors && !response.ok && isPreflight(request)) {
      response.body?.cancel().catch(() => {});
      response = preflightResponse(request);
    }
    try {
      apply(response.headers);
      return response;
    } catch {
      // Immutable headers, as on a fetch() result or Response.redirect():
      // a copy shares the body stream without reading it.
      const copy = new Response(response.body, response);
      apply(copy.headers);
      return copy;
    }
  };
  return (request, info) => {
    const response = handler(request, info);
    return response instanceof Promise
      ? response.then((response) => addTo(response, request))
      : addTo(response, request);
  };
}

/** Whether `request` is a CORS preflight: an OPTIONS request naming the method to come. */
function isPreflight(request: Request): boolean {
  return request.method === "OPTIONS" && request.headers.has("access-control-request-method");
}

/** A `204` that allows what a CORS preflight asks for, for a day. */
function preflightResponse(request: Request): Response {
  const headers = new Headers({
    "access-control-allow-methods": request.headers.get("access-control-request-method")!,
    "access-control-max-age": "86400",
  });
  const fields = request.headers.get("access-control-request-headers");
  if (fields !== null) headers.set("access-control-allow-headers", fields);
  return new Response(null, { status: 204, headers });
}

/**
 * Builds the handler for what brick serves.
 *
 * @param target What to serve.
 * @param flags The parsed flags.
 * @param args The original arguments, for hints.
 * @returns The request handler.
 */
async function createHandler(target: Target, flags: Flags, args: string[]): Promise<Handler> {
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
const HELLO_LENGTH = String(new TextEncoder().encode(HELLO).byteLength);

function helloWorld(): Response {
  return new Response(HELLO, {
    headers: { "content-type": "text/plain; charset=utf-8", "content-length": HELLO_LENGTH },
  });
}

/** One finished request, as the access log sees it. */
export interface AccessLogEntry {
  /** The client's address. */
  remoteAddr: string;
  /** When the request arrived. */
  date: Date;
  /** The request line as received, for example `GET /path?query HTTP/1.1`. */
  requestLine: string;
  /** The response status code. */
  status: number;
  /** The response body size in bytes, or `undefined` when unknown. */
  bytes: number | undefined;
}

/**
 * Formats an access log line in Common Log Format, with the date in the
 * local time zone: `127.0.0.1 - - [21/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 13`.
 *
 * @param entry The request to describe.
 * @returns The log line, without a newline.
 *
 * @example Usage
 * ```ts
 * import { formatAccessLog } from "./main.ts";
 * const line = formatAccessLog({
 *   remoteAddr: "127.0.0.1",
 *   date: new Date(),
 *   requestLine: "GET / HTTP/1.1",
 *   status: 200,
 *   bytes: 13,
 * });
 * console.assert(line.endsWith('"GET / HTTP/1.1" 200 13'));
 * ```
 */
export function formatAccessLog(entry: AccessLogEntry): string {
  const requestLine = escapeForLog(entry.requestLine.replace(/["\\]/g, "\\$&"));
  const bytes = entry.bytes === undefined ? "-" : String(entry.bytes);
  const date = formatClfDate(entry.date);
  return `${entry.remoteAddr} - - [${date}] "${requestLine}" ${entry.status} ${bytes}`;
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/**
 * Formats a date as Common Log Format does, in the local time zone:
 * `21/Nov/2026:10:00:00 +0000`.
 *
 * @param date The date to format.
 * @returns The formatted date.
 *
 * @example Usage
 * ```ts
 * import { formatClfDate } from "./main.ts";
 * console.log(formatClfDate(new Date()));
 * ```
 */
export function formatClfDate(date: Date): string {
  const two = (n: number) => String(n).padStart(2, "0");
  const offset = -date.getTimezoneOffset();
  const sign = offset < 0 ? "-" : "+";
  const zone = `${sign}${two(Math.floor(Math.abs(offset) / 60))}${two(Math.abs(offset) % 60)}`;
  return `${two(date.getDate())}/${MONTHS[date.getMonth()]}/${date.getFullYear()}:` +
    `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())} ${zone}`;
}

/**
 * Makes control characters visible (`\x1b`), so a client cannot move the
 * cursor or recolour the terminal of the person reading the log.
 * Tabs and line breaks are kept.
 */
function escapeForLog(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]/g, (c) => {
    return `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`;
  });
}

/** Decodes bytes one to one as latin1, the way an HTTP head is defined. */
function latin1(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    text += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return text;
}

/**
 * Writes one access log line per request, once its response is fully written
 * or the client has gone away. The request line is taken from the raw request
 * head, which `serve()` hands to {@linkcode AccessLog.recordHead} with the same
 * `info` object that the handler receives; without it, the line is rebuilt
 * from the method and the URL's path and query.
 */
class AccessLog {
  #requestLines = new WeakMap<ServeInfo, string>();

  /** @param log Receives one formatted line per request. */
  constructor(readonly log: (line: string) => void) {}

  /** Remembers the request line exactly as received, as Common Log Format wants it. */
  recordHead(head: Uint8Array, info: ServeInfo): void {
    let lf = head.indexOf(10);
    if (lf === -1) return;
    if (head[lf - 1] === 13) lf--;
    this.#requestLines.set(info, latin1(head.subarray(0, lf)));
  }

  /** Wraps a handler so each of its requests is logged. */
  wrap(handler: Handler): Handler {
    return async (request: Request, info: ServeInfo) => {
      const date = new Date();
      const requestLine = this.#requestLines.get(info) ??
        `${request.method} ${requestTarget(request.url)} HTTP/1.1`;
      const response = await handler(request, info);
      const length = response.headers.get("content-length");
      const entry: AccessLogEntry = {
        remoteAddr: info.remoteAddr.hostname,
        date,
        requestLine,
        status: response.status,
        bytes: length !== null && /^\d+$/.test(length) ? Number(length) : undefined,
      };
      const write = () => {
        try {
          this.log(formatAccessLog(entry));
        } catch {
          // A closed stdout must not take the server down.
        }
      };
      info.completed.then(write, write);
      return response;
    };
  }
}

/** The path and query of an absolute request URL. */
function requestTarget(url: string): string {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  return start === -1 ? "/" : url.slice(start);
}

/** Whether to colour what goes to stdout: only on a terminal, and never with `NO_COLOR`. */
function useColor(): boolean {
  try {
    // On Deno, reading the environment would need --allow-env; Deno.noColor does not.
    const noColor = deno ? deno.noColor : Boolean(process.env.NO_COLOR);
    return !noColor && process.stdout.isTTY === true;
  } catch {
    return false;
  }
}

/** Options for {@linkcode formatBanner}. */
export interface BannerOptions {
  /** The host given on the command line. */
  host: string;
  /** The port the server actually listens on. */
  port: number;
  /**
   * This machine's non-internal IPv4 addresses, for the Network lines; null
   * when listing them was not permitted (no `--allow-sys`), to print a hint.
   */
  networkAddresses: string[] | null;
  /** Whether to use ANSI colours. */
  color: boolean;
  /** What is served, shown above the URLs: an app module or a folder, by absolute path. */
  serving?: { kind: "app" | "folder"; path: string };
}

/**
 * Formats the startup banner: the version, what is served (`App:` or
 * `Folder:`), the `Local:` URL and, when listening on all interfaces, one
 * `Network:` URL per address.
 *
 * @param options Where the server listens and how to print it.
 * @returns The banner, without a trailing newline.
 *
 * @example Usage
 * ```ts
 * import { formatBanner } from "./main.ts";
 * console.log(formatBanner({ host: "0.0.0.0", port: 8888, networkAddresses: [], color: false }));
 * ```
 */
export function formatBanner(options: BannerOptions): string {
  const { host, port, color } = options;
  const bold = (s: string) => color ? `\x1b[1m${s}\x1b[22m` : s;
  const cyan = (s: string) => color ? `\x1b[36m${s}\x1b[39m` : s;
  const dim = (s: string) => color ? `\x1b[2m${s}\x1b[22m` : s;
  const url = (hostname: string) => cyan(`http://${formatHost(hostname)}:${bold(String(port))}/`);
  const lines = [`${bold("brick")} ${VERSION} is listening`];
  const { serving } = options;
  if (serving) lines.push(`  ${serving.kind === "app" ? "App:    " : "Folder: "} ${serving.path}`);
  if (isWildcard(host)) {
    lines.push(`  Local:   ${url("localhost")}`);
    if (options.networkAddresses === null) {
      lines.push(`  Network: ${dim("add --allow-sys to list this machine's addresses")}`);
    }
    for (const address of options.networkAddresses ?? []) {
      lines.push(`  Network: ${url(address)}`);
    }
  } else if (isLoopback(host)) {
    lines.push(`  Local:   ${url(host)}`);
  } else {
    lines.push(`  Network: ${url(host)}`);
  }
  lines.push(dim("Press Ctrl+C to stop"));
  return lines.join("\n");
}

function isWildcard(host: string): boolean {
  return host === "0.0.0.0" || host === "::" || host === "[::]";
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host === "[::1]" || host.startsWith("127.");
}

/** Brackets an IPv6 address for use in a URL or `host:port`. */
function formatHost(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}

/**
 * This machine's non-internal IPv4 addresses. On Deno, null when
 * `--allow-sys` was not given: the permission is queried first, so this never
 * prompts. Node and Bun need no permission.
 */
function networkAddresses(): string[] | null {
  try {
    if (deno) {
      const { state } = deno.permissions.querySync({ name: "sys", kind: "networkInterfaces" });
      if (state !== "granted") return null;
    }
    const addresses = Object.values(networkInterfaces()).flatMap((list) => list ?? [])
      .filter((i) => i.family === "IPv4" && !i.internal && !i.address.startsWith("127."))
      .map((i) => i.address);
    return [...new Set(addresses)];
  } catch {
    return [];
  }
}

/**
 * Prints the startup banner on stdout.
 *
 * @param host The host given on the command line.
 * @param port The port the server actually listens on.
 * @param target What is served; the banner names an app module or a folder.
 */
export function printBanner(host: string, port: number, target?: Target): void {
  const addresses = isWildcard(host) ? networkAddresses() : [];
  const serving = target && target.kind !== "hello"
    ? { kind: target.kind, path: target.path }
    : undefined;
  console.log(
    formatBanner({ host, port, networkAddresses: addresses, color: useColor(), serving }),
  );
}

/**
 * Prints a raw request head byte for byte, decoded as latin1, with control
 * characters made visible. Its closing empty line shows as a blank line.
 */
function printRequestHead(head: Uint8Array): void {
  try {
    console.log(escapeForLog(latin1(head)).replace(/\n$/, ""));
  } catch {
    // A closed stdout must not take the server down.
  }
}

/**
 * Whether the permission to listen was granted, asked without prompting.
 * Always true on Node and Bun, which have no such permission.
 */
function canListen(host: string, port: number): boolean {
  if (!deno) return true;
  try {
    const descriptor = { name: "net", host: `${formatHost(host)}:${port}` } as const;
    return deno.permissions.querySync(descriptor).state === "granted";
  } catch {
    return true; // Unknown: let serve() find out.
  }
}

/**
 * Why listening failed, as a Node error code (`EADDRINUSE`, `EACCES`,
 * `EADDRNOTAVAIL`), or `"ENOTCAPABLE"` for Deno's missing `--allow-net`.
 * Deno's error classes are mapped to the same codes.
 */
function listenErrorCode(error: unknown): string | undefined {
  if (deno) {
    // Deno 2 reports a missing --allow-net as NotCapable and keeps
    // PermissionDenied for the OS refusing (a port below 1024, say).
    const errors = deno.errors as Partial<typeof Deno.errors>;
    if (errors.NotCapable && error instanceof errors.NotCapable) return "ENOTCAPABLE";
    if (errors.AddrInUse && error instanceof errors.AddrInUse) return "EADDRINUSE";
    if (errors.AddrNotAvailable && error instanceof errors.AddrNotAvailable) {
      return "EADDRNOTAVAIL";
    }
    if (errors.PermissionDenied && error instanceof errors.PermissionDenied) {
      return errors.NotCapable ? "EACCES" : "ENOTCAPABLE";
    }
  }
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/** Quotes an argument for a POSIX shell when it needs it. */
function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

function permissionHint(address: string, args: string[], read: boolean): string {
  const command = [brickCommand(read), ...args.map(shellQuote)].join(" ");
  return `Cannot listen on ${address}: network access is not allowed\n` +
    `Run it with network access instead: ${command}`;
}

/**
 * Whether the files at `path` may be read, asked without prompting. Always
 * true on Node and Bun, which have no such permission.
 */
function canRead(path: string): boolean {
  if (!deno) return true;
  try {
    return deno.permissions.querySync({ name: "read", path }).state === "granted";
  } catch {
    return true; // Unknown: let the import or the file server find out.
  }
}

function readPermissionHint(name: string, args: string[]): string {
  const command = [brickCommand(true), ...args.map(shellQuote)].join(" ");
  return `Cannot read "${name}": file access is not allowed\n` +
    `Run it with read access instead: ${command}`;
}

/**
 * Explains why the server could not listen, in words a user can act on.
 *
 * @param error What `serve()` threw (Deno), or what `server.finished`
 * rejected with before the server listened (Node and Bun).
 * @param flags The parsed flags.
 * @param args The original arguments, to suggest a command to run instead.
 * @returns The message for stderr.
 */
export function describeListenError(error: unknown, flags: Flags, args: string[]): string {
  const address = `${formatHost(flags.host)}:${flags.port}`;
  switch (listenErrorCode(error)) {
    case "EADDRINUSE": {
      const next = flags.port === 0 || flags.port === 65535 ? 0 : flags.port + 1;
      return `Cannot listen on ${address}: address already in use (try --port ${next})`;
    }
    case "ENOTCAPABLE":
      return permissionHint(address, args, servesFiles(flags));
    case "EACCES":
      return `Cannot listen on ${address}: permission denied by the system ` +
        `(ports below 1024 usually need privileges; try --port ${DEFAULT_PORT})`;
    case "EADDRNOTAVAIL":
      return `Cannot listen on ${address}: address not available on this machine ` +
        `(try --host ${DEFAULT_HOST})`;
  }
  const detail = error instanceof Error ? error.message : String(error);
  // The error may already say where it could not listen.
  return detail.startsWith("Cannot listen on ") ? detail : `Cannot listen on ${address}: ${detail}`;
}

/** The path of the app module or folder to serve, if the flags name one. */
function servedPath(flags: Flags): string | undefined {
  return flags.app ?? flags.root ?? flags.path;
}

/** Whether brick reads files for these flags, which on Deno needs `--allow-read`. */
function servesFiles(flags: Flags): boolean {
  return servedPath(flags) !== undefined;
}

/** Listens for SIGINT and SIGTERM; returns a function that stops listening. */
function onShutdownSignal(listener: () => void): () => void {
  const added: ("SIGINT" | "SIGTERM")[] = [];
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    try {
      process.on(signal, listener);
      added.push(signal);
    } catch {
      // Deno cannot listen for SIGTERM on Windows.
    }
  }
  return () => added.forEach((signal) => process.off(signal, listener));
}

/**
 * Runs the `brick` command line: parses the flags, loads the app module or
 * finds the folder to serve, starts the server and waits until a SIGINT or
 * SIGTERM has shut it down gracefully.
 *
 * @param args The arguments after the script name, as in `process.argv.slice(2)`.
 * @returns The exit code: `0` after a graceful shutdown or `--help`/`--version`,
 * `1` when the server cannot start or the app throws while loading, `2` on a
 * bad flag, a missing file, a module without a fetch handler or a missing
 * `--allow-read`. A second signal during the shutdown exits at once with `130`.
 *
 * @example Usage
 * ```ts ignore
 * import process from "node:process";
 * import { main } from "./main.ts";
 * process.exit(await main(["--port", "8080", "app.ts"]));
 * ```
 */
export async function main(args: string[]): Promise<number> {
  let flags: Flags;
  try {
    flags = parseFlags(args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(error.message);
    console.error(USAGE);
    return 2;
  }
  if (flags.help) {
    console.log(formatHelp());
    return 0;
  }
  if (flags.version) {
    console.log(`brick ${VERSION}`);
    return 0;
  }

  const path = servedPath(flags);
  if (path !== undefined && !canRead(path)) {
    console.error(readPermissionHint(path, args));
    return 2;
  }
  const address = `${formatHost(flags.host)}:${flags.port}`;
  if (!canListen(flags.host, flags.port)) {
    console.error(permissionHint(address, args, servesFiles(flags)));
    return 1;
  }
  let target: Target;
  let handler: Handler;
  try {
    target = resolveTarget(flags);
    handler = await createHandler(target, flags, args);
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(error.message);
      console.error(USAGE);
      return 2;
    }
    if (!(error instanceof CliError)) throw error;
    console.error(error.message);
    return error.exitCode;
  }
  const heads: ((head: Uint8Array, info: ServeInfo) => void)[] = [];
  if (flags.verbose) heads.push(printRequestHead);
  if (!flags.quiet) {
    const accessLog = new AccessLog((line) => console.log(line));
    handler = accessLog.wrap(handler);
    heads.push((head, info) => accessLog.recordHead(head, info));
  }

  // Deno binds inside serve() and throws there when it cannot; Node and Bun
  // bind in the background and reject `server.finished` before onListen.
  let listening = false;
  let server: Server;
  try {
    server = serve({
      port: flags.port,
      hostname: flags.host,
      handler,
      onListen: ({ port }) => {
        listening = true;
        printBanner(flags.host, port, target);
      },
      onRequestHead: heads.length === 0 ? undefined : (head, info) => {
        for (const onHead of heads) onHead(head, info);
      },
    });
  } catch (error) {
    console.error(describeListenError(error, flags, args));
    return 1;
  }

  let shuttingDown = false;
  const removeSignalListeners = onShutdownSignal(() => {
    if (shuttingDown) {
      console.error("Forcing exit");
      process.exit(130);
    }
    shuttingDown = true;
    console.error("Shutting down");
    server.shutdown().catch((error) => {
      console.error(`Shutdown failed: ${error instanceof Error ? error.message : error}`);
    });
  });
  try {
    await server.finished;
    return 0;
  } catch (error) {
    if (!listening) console.error(describeListenError(error, flags, args));
    else console.error(`Server stopped: ${error instanceof Error ? error.message : error}`);
    return 1;
  } finally {
    removeSignalListeners();
  }
}

/**
 * Whether this module is the program's entry point. Deno, Bun and newer Node
 * versions say so in `import.meta.main`; on older Node it is the script named
 * in `process.argv[1]`, which for the npm package is the `brick` symlink (or a
 * shim naming the real file), so both paths are resolved before comparing.
 */
function isEntryPoint(): boolean {
  const meta = import.meta as { main?: boolean };
  if (typeof meta.main === "boolean") return meta.main;
  const script = process.argv[1];
  if (!script) return false;
  try {
    const self = realpathSync(fileURLToPath(import.meta.url));
    for (const candidate of [script, `${script}.js`]) {
      try {
        if (realpathSync(candidate) === self) return true;
      } catch {
        // No such file: try the next spelling.
      }
    }
  } catch {
    // Not a file URL: not started as a script.
  }
  return false;
}

if (isEntryPoint()) process.exit(await main(process.argv.slice(2)));
