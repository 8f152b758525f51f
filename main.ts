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
 * deno run --allow-net --allow-read main.ts --cert cert.pem --key key.pem   # HTTPS
 * deno run --allow-net --allow-read --allow-write main.ts --unix /tmp/brick.sock
 * deno run --allow-net --allow-read --unstable-net main.ts app.ts --workers auto
 * npx brick --port 0 app.js                               # the npm package, on Node
 * ```
 *
 * An app is a module whose default export is a fetch handler: a function
 * `(request, info) => Response`, or an object with a `fetch(request, info)`
 * method, as `deno serve` and Bun expect (a Hono app is one). A folder is
 * served by {@linkcode serveDir}: index.html, directory listings, ranges,
 * ETags and compression.
 *
 * With `--cert` and `--key` it speaks HTTPS; with `--unix` it listens on a
 * Unix domain socket instead of a TCP port, for a reverse proxy on the same
 * machine. With `--workers n` (or `auto`, one per core) n workers serve the
 * same port: threads on Deno, processes on Node (`node:cluster`) and Bun
 * (`SO_REUSEPORT`), with one banner, one access log, and a replacement for
 * any worker that crashes.
 *
 * The same file runs on Deno, Node (as the npm package's `brick` command) and
 * Bun: it uses `node:` modules, and Deno's permission API only where `Deno`
 * exists.
 *
 * Flags: `--port/-p`, `--host/-H`, `--cert <file>`, `--key <file>`,
 * `--unix <path>`, `--workers <n>`, `--app <module>`, `--root <folder>`,
 * `--dotfiles`, `--no-listing`, `--no-compress`, `--cors`,
 * `--header "Name: value"` (repeatable), `--verbose/-v` (print each request
 * head as received), `--quiet/-q` (no access log), `--help/-h`,
 * `--version/-V`. The hidden `--debug-worker` names the worker that answered
 * in an `x-brick-worker` response header.
 *
 * Exit codes: `0` after a graceful shutdown (SIGINT or SIGTERM) or `--help` /
 * `--version`; `1` when the server cannot start (a port in use, no
 * `--allow-net`), the app module throws while loading, or a worker keeps
 * crashing; `2` on a bad flag, a missing or unreadable file, a certificate
 * the TLS library refuses, a module without a fetch handler, a missing
 * `--allow-read`, or a Deno flag that `--workers` needs; `130` when a second
 * SIGINT or SIGTERM cuts the graceful shutdown short.
 *
 * @module
 */

import type { ChildProcess } from "node:child_process";
import { readFileSync, realpathSync, type Stats, statSync } from "node:fs";
import net from "node:net";
import { availableParallelism, cpus, networkInterfaces } from "node:os";
import { basename, extname, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { serveDir, type ServeDirOptions } from "./file_server.ts";
import {
  type Addr,
  type Handler,
  serve,
  type ServeInfo,
  type Server,
  type UnixAddr,
  VERSION,
} from "./mod.ts";

/** The port used when `--port` is not given. */
export const DEFAULT_PORT = 8888;
/** The interface used when `--host` is not given: all IPv4 interfaces. */
export const DEFAULT_HOST = "0.0.0.0";

/** Deno's API where this runs on Deno; undefined on Node and Bun. */
const deno: typeof Deno | undefined = (globalThis as { Deno?: typeof Deno }).Deno;
/** Whether this runs on Bun. */
const bun = typeof (process.versions as { bun?: string }).bun === "string";

/** The Deno flags that serving files needs. */
const READ_FILES = ["--allow-net", "--allow-read"];

/**
 * How this runtime starts brick, for the usage line and for hints. On Deno it
 * names the permissions and flags given, such as `["--allow-net"]`. On Node
 * and Bun it is the npm package's `brick` command, through `npx` when npx
 * started it.
 */
function brickCommand(denoFlags: string[]): string {
  if (deno) return ["deno run", ...denoFlags, "main.ts"].join(" ");
  return process.env.npm_command === "exec" ? "npx brick" : "brick";
}

/** The one-line usage printed under a flag error and at the top of `--help`. */
export const USAGE: string = `Usage: ${
  brickCommand(READ_FILES)
} [options] [<app module> | <folder>]`;

/** The flags `brick` understands, after parsing and validation. */
export interface Flags {
  /** Port to listen on; `0` lets the system pick a free one. */
  port: number;
  /** Interface to listen on. */
  host: string;
  /** The PEM certificate (chain) file given with `--cert`: brick speaks HTTPS. */
  cert: string | undefined;
  /** The PEM private key file of the certificate, given with `--key`. */
  key: string | undefined;
  /** The Unix domain socket to listen on instead of a TCP port, given with `--unix`. */
  unix: string | undefined;
  /**
   * How many workers serve: `1` serves in this process; more start a
   * supervisor and that many threads (Deno) or processes (Node, Bun).
   */
  workers: number;
  /** Add `x-brick-worker: <id>; pid=<pid>; start=<n>` to every response (hidden flag). */
  debugWorker: boolean;
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
  cert: { type: "string", value: "<file>", help: "Serve HTTPS with this PEM certificate chain" },
  key: { type: "string", value: "<file>", help: "The PEM private key of --cert" },
  unix: { type: "string", value: "<path>", help: "Listen on this Unix socket instead of a port" },
  workers: {
    type: "string",
    value: "<n>",
    help: 'Serve with n processes (threads on Deno); "auto": one per core',
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
  "debug-worker": {
    type: "boolean",
    hidden: true,
    help: "Name the worker that answered in an x-brick-worker response header",
  },
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
  "debug-worker": ["debugWorker", true],
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
    cert: undefined,
    key: undefined,
    unix: undefined,
    workers: 1,
    debugWorker: false,
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
  const given = new Set<OptionName>();
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
    given.add(name);
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
      case "cert":
      case "key":
      case "unix":
        if (value === "") throw new UsageError(`Missing value for "${token.rawName}"`);
        flags[name] = value;
        break;
      case "workers":
        flags.workers = parseWorkerCount(value);
        break;
      case "header":
        flags.headers.push(parseHeaderFlag(value));
        break;
    }
  }
  checkOneTarget(flags);
  checkListenFlags(flags, given);
  return flags;
}

/** The most workers `--workers` starts: a larger number is more likely a typo than a plan. */
const MAX_WORKERS = 256;

/** The number of CPU cores this process may use, as `--workers auto` counts them. */
function coreCount(): number {
  return typeof availableParallelism === "function" ? availableParallelism() : cpus().length || 1;
}

/** Reads a `--workers` value: a count from 1 to {@linkcode MAX_WORKERS}, or `auto`. */
function parseWorkerCount(value: string): number {
  if (value === "auto") return coreCount();
  const count = /^\d{1,4}$/.test(value) ? Number(value) : NaN;
  if (!(count >= 1 && count <= MAX_WORKERS)) {
    throw new UsageError(
      `Invalid worker count "${value}": expected a number from 1 to ${MAX_WORKERS}, or "auto"`,
    );
  }
  return count;
}

/**
 * Rejects listening flags that do not go together: a certificate without its
 * key (or the reverse), and `--unix` with anything that belongs to a TCP port.
 */
function checkListenFlags(flags: Flags, given: Set<OptionName>): void {
  if ((flags.cert === undefined) !== (flags.key === undefined)) {
    const [has, lacks] = flags.cert === undefined ? ["--key", "--cert"] : ["--cert", "--key"];
    throw new UsageError(
      `Flag "${has}" needs "${lacks}" too: HTTPS takes a certificate and its private key`,
    );
  }
  if (flags.unix === undefined) return;
  const why = {
    port: "brick listens on a Unix socket or on a TCP port, not both",
    host: "brick listens on a Unix socket or on a TCP port, not both",
    cert: "brick serves HTTPS on TCP ports only",
    key: "brick serves HTTPS on TCP ports only",
    workers: "workers share a TCP port",
  } as const;
  for (const name of ["port", "host", "cert", "key", "workers"] as const) {
    if (!given.has(name) || (name === "workers" && flags.workers === 1)) continue;
    throw new UsageError(`Flag "--unix" cannot be combined with "--${name}": ${why[name]}`);
  }
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
  const rows = Object.entries(OPTIONS).filter(([, option]) => !("hidden" in option)).map(
    ([name, option]) => {
      const short = "short" in option ? `-${option.short}, ` : "    ";
      const value = "value" in option ? ` ${option.value}` : "";
      return [`${short}--${name}${value}`, option.help];
    },
  );
  const width = Math.max(...rows.map(([left]) => left.length));
  const hello = brickCommand(["--allow-net"]);
  const files = brickCommand(READ_FILES);
  const workers = brickCommand([...READ_FILES, "--unstable-net"]);
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
    "  # HTTPS with a certificate and its key, in PEM files",
    `  ${files} ./public --cert cert.pem --key key.pem`,
    "  # An app on every core of this machine",
    `  ${workers} app.${deno || bun ? "ts" : "js"} --workers auto`,
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

/** The certificate chain and private key named by `--cert` and `--key`, as PEM text. */
interface TlsFiles {
  cert: string;
  key: string;
}

/**
 * Reads the files given with `--cert` and `--key`.
 *
 * @returns Their text, or undefined without `--cert`.
 * @throws {CliError} With exit code 2 when a file cannot be read or holds no PEM block.
 */
function readTlsFiles(flags: Flags): TlsFiles | undefined {
  if (flags.cert === undefined || flags.key === undefined) return undefined;
  return {
    cert: readPemFile(flags.cert, "--cert", "certificate"),
    key: readPemFile(flags.key, "--key", "private key"),
  };
}

function readPemFile(name: string, flag: string, what: string): string {
  const path = resolve(name);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code;
    const why = code === "ENOENT"
      ? `no such file (${path})`
      : code === "EISDIR"
      ? "it is a folder"
      : code === "EACCES"
      ? "permission denied by the system"
      : error instanceof Error
      ? error.message
      : String(error);
    throw new CliError(`Cannot read the ${what} "${name}" (${flag}): ${why}`, 2, { cause: error });
  }
  if (!text.includes("-----BEGIN ")) {
    throw new CliError(
      `Cannot use "${name}" as the ${what} (${flag}): it holds no PEM block ("-----BEGIN …")`,
      2,
    );
  }
  return text;
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
  /** The client's IP address, or `unix` for a client on a Unix socket. */
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
        remoteAddr: clientAddress(info.remoteAddr as Addr),
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

/** The client's address for the log: its IP address, or `unix` on a Unix socket. */
function clientAddress(addr: Addr): string {
  return addr.transport === "unix" ? "unix" : addr.hostname;
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
  /** Whether the server speaks HTTPS: the URLs then start with `https://`. */
  tls?: boolean;
  /**
   * The Unix socket the server listens on, by absolute path. The banner then
   * shows it, and how to reach it with curl, instead of URLs.
   */
  socket?: string;
  /**
   * The workers that serve, when there are several: how many, and their
   * process ids; without `pids`, they are threads of this process (Deno).
   */
  workers?: { count: number; pids?: number[] };
}

/**
 * Formats the startup banner: the version, what is served (`App:` or
 * `Folder:`), the workers, the `Local:` URL and, when listening on all
 * interfaces, one `Network:` URL per address; or for a Unix socket, its path
 * and a curl command that reaches it.
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
  const scheme = options.tls ? "https://" : "http://";
  const url = (hostname: string) => cyan(`${scheme}${formatHost(hostname)}:${bold(String(port))}/`);
  const lines = [`${bold("brick")} ${VERSION} is listening`];
  const { serving, socket, workers } = options;
  if (serving) lines.push(`  ${serving.kind === "app" ? "App:    " : "Folder: "} ${serving.path}`);
  if (workers) {
    const pids = workers.pids ? ` (pids ${workers.pids.join(", ")})` : "";
    lines.push(`  Workers: ${workers.count} ${workers.pids ? "processes" : "threads"}${pids}`);
  }
  if (socket !== undefined) {
    lines.push(`  Socket:  ${cyan(socket)}`);
    lines.push(`  Try:     ${dim(`curl --unix-socket ${shellQuote(socket)} http://localhost/`)}`);
  } else if (isWildcard(host)) {
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
 * @param more HTTPS, a Unix socket or workers, as {@linkcode BannerOptions} describes them.
 */
export function printBanner(
  host: string,
  port: number,
  target?: Target,
  more: Pick<BannerOptions, "tls" | "socket" | "workers"> = {},
): void {
  const addresses = isWildcard(host) && more.socket === undefined ? networkAddresses() : [];
  const serving = target && target.kind !== "hello"
    ? { kind: target.kind, path: target.path }
    : undefined;
  const color = useColor();
  console.log(
    formatBanner({ host, port, networkAddresses: addresses, color, serving, ...more }),
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
 * Asks Deno whether a permission was granted, without prompting. Always true
 * on Node and Bun, which have no permissions; true when the answer is
 * unknown, to let the call itself find out.
 */
function granted(descriptor: Deno.PermissionDescriptor): boolean {
  if (!deno) return true;
  try {
    return deno.permissions.querySync(descriptor).state === "granted";
  } catch {
    return true;
  }
}

/**
 * Whether the permissions to listen were granted: network access to the
 * address, and for a Unix socket also reading and writing its path.
 */
function canListen(flags: Flags): boolean {
  if (flags.unix === undefined) {
    return granted({ name: "net", host: `${formatHost(flags.host)}:${flags.port}` });
  }
  const path = resolve(flags.unix);
  return granted({ name: "net", host: `unix:${path}` }) && granted({ name: "read", path }) &&
    granted({ name: "write", path });
}

/** Whether the file or folder at `path` may be read. */
function canRead(path: string): boolean {
  return granted({ name: "read", path });
}

/** The first file brick must read (app, folder, certificate, key) that it may not, if any. */
function unreadableFile(flags: Flags): string | undefined {
  return [servedPath(flags), flags.cert, flags.key].find((name) =>
    name !== undefined && !canRead(resolve(name))
  );
}

/** Where the flags say to listen, for messages: `host:port`, or the socket's path. */
function listenAddress(flags: Flags): string {
  return flags.unix === undefined ? `${formatHost(flags.host)}:${flags.port}` : resolve(flags.unix);
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

/** The prefix of the error `serve()` throws when the TLS library refuses the certificate or key. */
const TLS_SETUP_ERROR = "Cannot use the TLS certificate and key: ";

/** Why the TLS library refused the certificate or key, if that is why `serve()` failed. */
function tlsSetupProblem(error: unknown): string | undefined {
  if (!(error instanceof TypeError) || !error.message.startsWith(TLS_SETUP_ERROR)) return undefined;
  const cause = error.cause;
  return cause instanceof Error ? cause.message : String(cause ?? error.message);
}

/** The exit code for a server that could not start: `2` for a certificate to fix, else `1`. */
function listenExitCode(error: unknown): 1 | 2 {
  return tlsSetupProblem(error) === undefined ? 1 : 2;
}

/** Quotes an argument for a POSIX shell when it needs it. */
function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

/** The Deno permissions and flags that brick needs to run with `flags`. */
function denoFlags(flags: Flags): string[] {
  const needed = ["--allow-net"];
  if (readsFiles(flags) || flags.workers > 1) needed.push("--allow-read");
  if (flags.unix !== undefined) needed.push("--allow-write");
  if (flags.workers > 1) needed.push("--unstable-net");
  return needed;
}

/** The command to run instead: the same arguments, with what Deno needs for them. */
function commandFor(flags: Flags, args: string[]): string {
  return [brickCommand(denoFlags(flags)), ...args.map(shellQuote)].join(" ");
}

function permissionHint(flags: Flags, args: string[]): string {
  if (flags.unix !== undefined) {
    return `Cannot listen on ${listenAddress(flags)}: ` +
      "a Unix socket needs network, read and write access\n" +
      `Run it with them instead: ${commandFor(flags, args)}`;
  }
  return `Cannot listen on ${listenAddress(flags)}: network access is not allowed\n` +
    `Run it with network access instead: ${commandFor(flags, args)}`;
}

function readPermissionHint(name: string, flags: Flags, args: string[]): string {
  return `Cannot read "${name}": file access is not allowed\n` +
    `Run it with read access instead: ${commandFor(flags, args)}`;
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
  const address = listenAddress(flags);
  const tls = tlsSetupProblem(error);
  if (tls !== undefined) {
    return `Cannot use --cert "${flags.cert}" with --key "${flags.key}": ${tls} ` +
      "(check that both are PEM files and that the key belongs to the certificate)";
  }
  switch (listenErrorCode(error)) {
    case "EADDRINUSE": {
      if (flags.unix !== undefined) {
        return `Cannot listen on ${address}: address already in use ` +
          "(a running server listens there; stop it or choose another --unix path)";
      }
      const next = flags.port === 0 || flags.port === 65535 ? 0 : flags.port + 1;
      return `Cannot listen on ${address}: address already in use (try --port ${next})`;
    }
    case "ENOTCAPABLE":
      return permissionHint(flags, args);
    case "EACCES":
      if (flags.unix !== undefined) {
        return `Cannot listen on ${address}: permission denied by the system ` +
          "(choose a folder you may write to)";
      }
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
function readsFiles(flags: Flags): boolean {
  return servedPath(flags) !== undefined || flags.cert !== undefined || flags.unix !== undefined;
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
 * SIGTERM has shut it down gracefully. With `--workers` above 1 it starts and
 * watches the workers instead, which serve.
 *
 * @param args The arguments after the script name, as in `process.argv.slice(2)`.
 * @returns The exit code: `0` after a graceful shutdown or `--help`/`--version`,
 * `1` when the server cannot start, the app throws while loading or a worker
 * keeps crashing, `2` on a bad flag, a missing file, a certificate the TLS
 * library refuses, a module without a fetch handler or a missing
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
  return await runCli(args, processWorkerRole());
}

/** Runs the command line as the whole server, or as one worker of a supervisor (`role`). */
async function runCli(args: string[], role: WorkerRole | undefined): Promise<number> {
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

  const unreadable = unreadableFile(flags);
  if (unreadable !== undefined) {
    console.error(readPermissionHint(unreadable, flags, args));
    return 2;
  }
  if (!canListen(flags)) {
    console.error(permissionHint(flags, args));
    return 1;
  }
  let target: Target;
  let tls: TlsFiles | undefined;
  let handler: Handler;
  try {
    tls = readTlsFiles(flags);
    target = resolveTarget(flags);
    if (role === undefined && flags.workers > 1) {
      checkWorkerSupport(flags, args);
      return await superviseWorkers(flags, args, target);
    }
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
  if (flags.debugWorker) handler = withWorkerHeader(handler, role);
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
  let server: Server<Addr>;
  try {
    server = listenWith(flags, tls, role, {
      handler,
      onRequestHead: heads.length === 0 ? undefined : (head, info) => {
        for (const onHead of heads) onHead(head, info);
      },
      onListen: (addr) => {
        listening = true;
        if (role) role.listening();
        else if (addr.transport === "unix") {
          printBanner(flags.host, 0, target, { socket: addr.path });
        } else printBanner(flags.host, addr.port, target, { tls: tls !== undefined });
      },
    });
  } catch (error) {
    console.error(describeListenError(error, flags, args));
    return listenExitCode(error);
  }

  const shutDown = () => {
    server.shutdown().catch((error) => {
      console.error(`Shutdown failed: ${error instanceof Error ? error.message : error}`);
    });
  };
  let shuttingDown = false;
  const removeStopListeners = role ? role.onStop(shutDown) : onShutdownSignal(() => {
    if (shuttingDown) {
      console.error("Forcing exit");
      process.exit(130);
    }
    shuttingDown = true;
    console.error("Shutting down");
    shutDown();
  });
  try {
    await server.finished;
    return 0;
  } catch (error) {
    if (!listening) {
      console.error(describeListenError(error, flags, args));
      return listenExitCode(error);
    }
    console.error(`Server stopped: ${error instanceof Error ? error.message : error}`);
    return 1;
  } finally {
    removeStopListeners();
  }
}

/** What the server calls besides the handler. */
interface ServerCallbacks {
  handler: Handler;
  onRequestHead?: (head: Uint8Array, info: ServeInfo) => void;
  onListen: (addr: Addr) => void;
}

/** Starts the server where the flags say: a TCP port (with TLS if given) or a Unix socket. */
function listenWith(
  flags: Flags,
  tls: TlsFiles | undefined,
  role: WorkerRole | undefined,
  callbacks: ServerCallbacks,
): Server<Addr> {
  const { handler, onRequestHead, onListen } = callbacks;
  if (flags.unix !== undefined) {
    // The handler reads info.remoteAddr only through clientAddress(), which knows both kinds.
    const unixHandler = handler as unknown as Handler<UnixAddr>;
    return serve({ path: resolve(flags.unix), handler: unixHandler, onRequestHead, onListen });
  }
  return serve({
    port: role?.port ?? flags.port,
    hostname: flags.host,
    ...tls,
    // Workers share the port. On Deno and Bun each has a socket of its own
    // with SO_REUSEPORT; on Node, node:cluster shares the supervisor's socket.
    reusePort: role !== undefined && (deno !== undefined || bun),
    handler,
    onRequestHead,
    onListen,
  });
}

/** Adds `x-brick-worker: <id>; pid=<pid>; start=<n>` to every response (`--debug-worker`). */
function withWorkerHeader(handler: Handler, role: WorkerRole | undefined): Handler {
  const value = `${role?.id ?? 1}; pid=${process.pid}; start=${role?.start ?? 1}`;
  return withResponseHeaders(handler, [["x-brick-worker", value]], false);
}

// ─── Workers ────────────────────────────────────────────────────────────────
// With `--workers n`, this process becomes a supervisor. It checks the flags,
// the files and the port, starts n workers that each run this same command
// line and listen on the same port, prints one banner once all of them
// listen, restarts a worker that ends, and on SIGINT or SIGTERM asks each to
// shut down gracefully. The workers are:
//   - on Deno, threads (Web Workers) of this process. They inherit its
//     permissions, import map and flags as they are; each listens with
//     SO_REUSEPORT, which Deno still marks unstable (--unstable-net).
//     Their access log lines go to the shared stdout, one write per line.
//   - on Bun, child processes, each listening with SO_REUSEPORT.
//   - on Node, node:cluster processes: Node before 22.12 has no
//     SO_REUSEPORT, so the workers share the supervisor's listening socket.
//     Child processes write their output to pipes; the supervisor passes it
//     on in whole lines, so lines from two workers never mix.

/** What the supervisor tells a worker. */
interface WorkerAssignment {
  /** The worker's number, 1 to n; a replacement keeps the number of the worker it replaces. */
  id: number;
  /** The port that every worker listens on. */
  port: number;
  /** How many times a worker with this number has been started, 1 for the first. */
  start: number;
}

/** A worker's side of the link to its supervisor. */
interface WorkerRole extends WorkerAssignment {
  /** Tells the supervisor that this worker listens. */
  listening(): void;
  /**
   * Calls `listener` when the supervisor asks this worker to stop.
   *
   * @returns A function that removes the listener.
   */
  onStop(listener: () => void): () => void;
}

/** The environment variable that makes a Node or Bun process a worker: its assignment as JSON. */
const WORKER_ENV = "BRICK_WORKER";
/** The name prefix of the threads that serve as workers on Deno. */
const THREAD_PREFIX = "brick-worker-";

/** Reads an assignment sent by the supervisor, or undefined when it is not one. */
function parseAssignment(value: unknown): WorkerAssignment | undefined {
  const { id, port, start } = (value ?? {}) as Partial<Record<keyof WorkerAssignment, unknown>>;
  const valid = [id, port, start].every((n) => Number.isInteger(n) && (n as number) >= 0);
  return valid ? { id, port, start } as WorkerAssignment : undefined;
}

/**
 * This process's role as a worker on Node or Bun: set when the supervisor
 * started it with its assignment in the environment and an IPC channel.
 */
function processWorkerRole(): WorkerRole | undefined {
  if (deno) return undefined;
  const text = process.env[WORKER_ENV];
  const send = process.send?.bind(process);
  if (text === undefined || send === undefined) return undefined;
  // The app's own child processes must not take themselves for workers.
  delete process.env[WORKER_ENV];
  let assignment: WorkerAssignment | undefined;
  try {
    assignment = parseAssignment(JSON.parse(text));
  } catch {
    assignment = undefined;
  }
  if (assignment === undefined) return undefined;
  // Ctrl+C in a terminal signals every process of the group. The supervisor
  // decides what it means, and sends SIGTERM.
  process.on("SIGINT", () => {});
  return {
    ...assignment,
    listening() {
      try {
        send({ brick: "listening" });
      } catch {
        // The supervisor is gone; "disconnect" stops this worker.
      }
    },
    onStop(listener) {
      process.on("SIGTERM", listener);
      process.on("disconnect", listener); // the supervisor is gone
      return () => {
        process.off("SIGTERM", listener);
        process.off("disconnect", listener);
      };
    },
  };
}

/** What a Deno worker thread sees of its global scope. */
interface ThreadScope {
  name: string;
  onmessage: ((event: MessageEvent) => void) | null;
  postMessage(message: unknown): void;
  addEventListener(type: "unload", listener: () => void): void;
}

/** This thread's global scope when it is a worker thread that the supervisor started on Deno. */
function threadScope(): ThreadScope | undefined {
  if (!deno) return undefined;
  const scope = globalThis as unknown as Partial<ThreadScope> & { WorkerGlobalScope?: unknown };
  const isWorker = typeof scope.WorkerGlobalScope === "function";
  return isWorker && scope.name?.startsWith(THREAD_PREFIX) ? scope as ThreadScope : undefined;
}

/**
 * Serves as a worker thread on Deno: waits for the supervisor's start message
 * with the arguments and the assignment, runs the command line, and reports
 * the exit code when the server has shut down.
 */
function serveAsThread(scope: ThreadScope): void {
  let role: WorkerRole | undefined;
  let stopRequested = false;
  const stopListeners = new Set<() => void>();
  scope.onmessage = (event) => {
    const message = (event.data ?? {}) as { brick?: unknown; args?: unknown };
    if (message.brick === "stop") {
      stopRequested = true;
      for (const listener of [...stopListeners]) listener();
      return;
    }
    const assignment = parseAssignment(message);
    if (message.brick !== "start" || role || !assignment || !Array.isArray(message.args)) return;
    role = {
      ...assignment,
      listening: () => scope.postMessage({ brick: "listening" }),
      onStop(listener) {
        // A stop that came while the app was loading applies once it listens.
        if (stopRequested) queueMicrotask(listener);
        stopListeners.add(listener);
        return () => stopListeners.delete(listener);
      },
    };
    // A rejection reaches the supervisor as the thread's error event.
    runCli(message.args.map(String), role).then((code) => {
      scope.postMessage({ brick: "exit", code });
    });
  };
  // Deno.exit() or process.exit() in an app ends only this thread: tell the supervisor.
  scope.addEventListener("unload", () => {
    scope.postMessage({ brick: "exit", code: deno?.exitCode ?? 0 });
  });
}

/** How a worker ended: its exit code, or the signal that ended it. */
interface WorkerExit {
  code: number | null;
  signal: string | null;
}

/** The supervisor's handle on one worker, a thread or a process. */
interface WorkerHandle {
  readonly assignment: WorkerAssignment;
  /** The process id; undefined for a thread. */
  readonly pid: number | undefined;
  /** Resolves once the worker listens. */
  readonly listening: Promise<void>;
  /** Resolves once the worker has ended, however it ended, and its output is passed on. */
  readonly exited: Promise<WorkerExit>;
  /** Asks the worker to shut down gracefully. */
  stop(): void;
  /** Ends the worker at once. */
  kill(): void;
}

type StartWorker = (assignment: WorkerAssignment) => WorkerHandle;

/** Starts a worker thread on Deno, running this module with `args`. */
function startThread(assignment: WorkerAssignment, args: string[]): WorkerHandle {
  const worker = new Worker(import.meta.url, {
    type: "module",
    name: `${THREAD_PREFIX}${assignment.id}`,
  });
  let ended = false;
  let settle!: (exit: WorkerExit) => void;
  const exited = new Promise<WorkerExit>((resolve) => settle = resolve);
  const end = (exit: WorkerExit) => {
    if (ended) return;
    ended = true;
    worker.terminate();
    settle(exit);
  };
  const listening = new Promise<void>((resolve) => {
    worker.onmessage = (event: MessageEvent) => {
      const message = (event.data ?? {}) as { brick?: unknown; code?: unknown };
      if (message.brick === "listening") resolve();
      if (message.brick === "exit") {
        end({ code: typeof message.code === "number" ? message.code : 1, signal: null });
      }
    };
  });
  // An uncaught error ends the thread (Deno prints it); handled here, it
  // does not end the process.
  worker.onerror = (event) => {
    event.preventDefault();
    end({ code: 1, signal: null });
  };
  worker.postMessage({ brick: "start", args, ...assignment });
  return {
    assignment,
    pid: undefined,
    listening,
    exited,
    stop: () => ended || worker.postMessage({ brick: "stop" }),
    kill: () => end({ code: null, signal: "SIGKILL" }),
  };
}

/** How long the supervisor waits for a worker's output to end after the worker has exited. */
const OUTPUT_DRAIN_MS = 1000;

/** Watches a worker process: its messages, its exit, and its output, passed on in whole lines. */
function watchProcess(child: ChildProcess, assignment: WorkerAssignment): WorkerHandle {
  const output = [
    relayLines(child.stdout, process.stdout),
    relayLines(child.stderr, process.stderr),
  ];
  const listening = new Promise<void>((resolve) => {
    child.on("message", (message: { brick?: unknown } | null) => {
      if (message?.brick === "listening") resolve();
    });
  });
  const exited = new Promise<WorkerExit>((resolve) => {
    child.once("exit", (code, signal) => {
      // The last lines may still be in the pipes; a process that the worker
      // started may hold them open, so do not wait for long.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const drained = new Promise((resolve) => timer = setTimeout(resolve, OUTPUT_DRAIN_MS));
      Promise.race([Promise.all(output), drained]).then(() => {
        clearTimeout(timer);
        resolve({ code, signal });
      });
    });
    child.once("error", (error) => {
      console.error(`Cannot start worker ${assignment.id}: ${error.message}`);
      resolve({ code: 1, signal: null });
    });
  });
  const send = (signal: "SIGTERM" | "SIGKILL") => {
    try {
      child.kill(signal);
    } catch {
      // It has exited meanwhile.
    }
  };
  return {
    assignment,
    pid: child.pid,
    listening,
    exited,
    stop: () => send("SIGTERM"),
    kill: () => send("SIGKILL"),
  };
}

/** The longest unfinished line of a worker's output held back before it is passed on anyway. */
const MAX_HELD_BYTES = 65_536;
const NEWLINE = new Uint8Array([10]);

/**
 * Passes a worker's output on to `target` in whole lines: each write ends
 * with a line break, so lines from two workers never mix. Resolves once
 * `source` has ended.
 */
function relayLines(
  source: NodeJS.ReadableStream | null,
  target: NodeJS.WritableStream,
): Promise<void> {
  if (source === null) return Promise.resolve();
  let held: Uint8Array = new Uint8Array(0);
  const write = (bytes: Uint8Array) => {
    try {
      target.write(bytes);
    } catch {
      // A closed stdout must not take the supervisor down.
    }
  };
  source.on("data", (chunk: Uint8Array) => {
    const end = chunk.lastIndexOf(10);
    if (end === -1) {
      held = concatBytes(held, chunk);
      if (held.length >= MAX_HELD_BYTES) {
        write(held);
        held = new Uint8Array(0);
      }
      return;
    }
    write(concatBytes(held, chunk.subarray(0, end + 1)));
    held = chunk.slice(end + 1);
  });
  return new Promise((resolve) => {
    const finish = () => {
      if (held.length > 0) write(concatBytes(held, NEWLINE));
      held = new Uint8Array(0);
      resolve();
    };
    source.once("end", finish);
    source.once("error", finish);
  });
}

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const bytes = new Uint8Array(a.length + b.length);
  bytes.set(a);
  bytes.set(b, a.length);
  return bytes;
}

/** How this runtime starts a worker: a thread on Deno, a process on Node and Bun. */
async function workerStarter(args: string[]): Promise<StartWorker> {
  if (deno) return (assignment) => startThread(assignment, args);
  const script = fileURLToPath(import.meta.url);
  const env = (assignment: WorkerAssignment) => ({ [WORKER_ENV]: JSON.stringify(assignment) });
  if (bun) {
    const { fork } = await import("node:child_process");
    return (assignment) => {
      const child = fork(script, args, {
        env: { ...process.env, ...env(assignment) },
        silent: true,
      });
      return watchProcess(child, assignment);
    };
  }
  const { default: cluster } = await import("node:cluster");
  cluster.setupPrimary({ exec: script, args, silent: true });
  return (assignment) => watchProcess(cluster.fork(env(assignment)).process, assignment);
}

/** A worker that exits sooner than this after it started counts as a quick exit. */
const QUICK_EXIT_MS = 10_000;
/** The quick exits in a row of one worker after which the supervisor gives up. */
const MAX_QUICK_EXITS = 5;
/** The pause before restarting a worker after a quick exit; it doubles with each one in a row. */
const RESTART_DELAY_MS = 100;
/** How long workers may take to stop: their own graceful shutdown (10 s) and some. */
const STOP_TIMEOUT_MS = 15_000;
/** How long a second signal waits for the killed workers to be gone before brick exits. */
const FORCED_EXIT_MS = 2000;

/** "worker 2 (pid 1234)", or "worker 2" for a thread. */
function describeWorker(worker: WorkerHandle): string {
  const pid = worker.pid === undefined ? "" : ` (pid ${worker.pid})`;
  return `worker ${worker.assignment.id}${pid}`;
}

function describeExit(exit: WorkerExit): string {
  return exit.code === null ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
}

/** Starts n workers, restarts those that end, and stops them all. */
class Supervisor {
  /** Resolves with the exit code once every worker has ended after {@linkcode stop} or {@linkcode kill}. */
  readonly done: Promise<number>;
  readonly #workers = new Map<number, WorkerHandle>();
  readonly #starts: number[];
  readonly #quickExits: number[];
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  #stopping = false;
  #exitCode = 0;
  #finish!: (code: number) => void;

  constructor(
    readonly count: number,
    readonly port: number,
    readonly startWorker: StartWorker,
    readonly log: (line: string) => void,
  ) {
    this.#starts = new Array(count).fill(0);
    this.#quickExits = new Array(count).fill(0);
    this.done = new Promise((resolve) => this.#finish = resolve);
  }

  /** The process ids of the running workers, or undefined when they are threads. */
  get pids(): number[] | undefined {
    const workers = [...this.#workers.values()].sort((a, b) => a.assignment.id - b.assignment.id);
    if (workers.some((worker) => worker.pid === undefined)) return undefined;
    return workers.map((worker) => worker.pid!);
  }

  /**
   * Starts the workers: the first alone, so that an app that cannot load says
   * so once, then the others together.
   *
   * @returns Undefined once each has listened, or the exit code of the first
   * that ended before it listened; the others are stopped then.
   */
  async start(): Promise<number | undefined> {
    const first = await this.#startAndWait(1);
    if (first !== undefined) return first;
    const ids = Array.from({ length: this.count - 1 }, (_, i) => i + 2);
    const others = await Promise.all(ids.map((id) => this.#startAndWait(id)));
    const failed = others.find((code) => code !== undefined);
    if (failed === undefined) return undefined;
    this.stop();
    await this.done;
    return failed;
  }

  async #startAndWait(id: number): Promise<number | undefined> {
    if (this.#stopping) return undefined;
    const worker = this.#launch(id);
    const exit = await Promise.race([worker.listening.then(() => null), worker.exited]);
    return exit === null || this.#stopping ? undefined : exit.code || 1;
  }

  #launch(id: number): WorkerHandle {
    const start = ++this.#starts[id - 1];
    const startedAt = Date.now();
    const worker = this.startWorker({ id, port: this.port, start });
    this.#workers.set(id, worker);
    let listened = false;
    worker.listening.then(() => {
      listened = true;
      if (start > 1 && !this.#stopping) this.log(`${describeWorker(worker)} is listening`);
    });
    worker.exited.then((exit) => {
      if (this.#workers.get(id) === worker) this.#workers.delete(id);
      if (this.#stopping) this.#finishIfDone();
      // A first start that fails is start()'s to report.
      else if (listened || start > 1) this.#restart(worker, exit, Date.now() - startedAt);
    });
    return worker;
  }

  /** Restarts a worker that ended, after a pause that grows while it keeps ending soon after its start. */
  #restart(worker: WorkerHandle, exit: WorkerExit, lifetime: number): void {
    const { id } = worker.assignment;
    const quickExits = this.#quickExits[id - 1] = lifetime < QUICK_EXIT_MS
      ? this.#quickExits[id - 1] + 1
      : 0;
    const what = `${describeWorker(worker)} ${describeExit(exit)}`;
    if (quickExits >= MAX_QUICK_EXITS) {
      this.log(
        `${what}; giving up: it ended ${quickExits} times in a row within ` +
          `${QUICK_EXIT_MS / 1000} s of its start (its errors are above)`,
      );
      this.#exitCode = 1;
      this.stop();
      return;
    }
    const delay = quickExits === 0 ? 0 : RESTART_DELAY_MS * 2 ** (quickExits - 1);
    this.log(`${what}; restarting${delay > 0 ? ` in ${delay} ms` : ""}`);
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (!this.#stopping) this.#launch(id);
    }, delay);
    this.#timers.add(timer);
  }

  /** Asks every worker to shut down gracefully, and kills those still running after a while. */
  stop(): void {
    if (this.#stopping) return;
    this.#stopping = true;
    this.#clearTimers();
    for (const worker of this.#workers.values()) worker.stop();
    const deadline = setTimeout(() => {
      for (const worker of this.#workers.values()) {
        this.log(`${describeWorker(worker)} did not stop within ${STOP_TIMEOUT_MS / 1000} s`);
        worker.kill();
      }
    }, STOP_TIMEOUT_MS);
    this.done.then(() => clearTimeout(deadline));
    this.#finishIfDone();
  }

  /** Ends every worker at once. */
  kill(): void {
    this.#stopping = true;
    this.#clearTimers();
    for (const worker of this.#workers.values()) worker.kill();
  }

  #clearTimers(): void {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
  }

  #finishIfDone(): void {
    if (this.#workers.size === 0) this.#finish(this.#exitCode);
  }
}

/**
 * Checks that `host:port` is free by binding it for a moment, and returns the
 * port, the one the system picked when `port` is 0, for every worker to share.
 * Binding without SO_REUSEPORT first also keeps the workers from joining the
 * sockets of another server that listens there with it.
 */
async function probePort(host: string, port: number): Promise<number> {
  if (deno) {
    const listener = deno.listen({ hostname: host, port });
    const picked = (listener.addr as Deno.NetAddr).port;
    listener.close();
    return picked;
  }
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host, port }, resolve);
  });
  const picked = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return picked;
}

/**
 * Checks what workers need on Deno: `--unstable-net`, since they listen with
 * SO_REUSEPORT, and read access to this module, which each thread loads.
 *
 * @throws {CliError} With exit code 2 and the command to run instead.
 */
function checkWorkerSupport(flags: Flags, args: string[]): void {
  if (!deno) return;
  const missing: string[] = [];
  // Deno.listenDatagram exists only with --unstable-net (or "unstable": ["net"] in deno.json).
  if (typeof (deno as { listenDatagram?: unknown }).listenDatagram !== "function") {
    missing.push("--unstable-net, as the workers share the port with SO_REUSEPORT");
  }
  const self = import.meta.url.startsWith("file:") ? fileURLToPath(import.meta.url) : undefined;
  if (self !== undefined && !canRead(self)) {
    missing.push(`read access to ${basename(self)}, which each worker thread loads`);
  }
  if (missing.length === 0) return;
  throw new CliError(
    `Cannot start ${flags.workers} workers: Deno needs ${missing.join(", and ")}\n` +
      `Run it with them instead: ${commandFor(flags, args)}`,
    2,
  );
}

/**
 * Runs the workers until a SIGINT or SIGTERM: picks the port, starts them,
 * prints the banner once all listen, restarts any that ends, then stops them
 * all gracefully (a second signal kills them).
 *
 * @returns The exit code: `0` after a graceful shutdown, `130` when forced,
 * `1` when a worker kept crashing or the port is taken, or the exit code of a
 * worker that ended before it listened (`2` for an app without a handler).
 */
async function superviseWorkers(flags: Flags, args: string[], target: Target): Promise<number> {
  let port: number;
  try {
    port = await probePort(flags.host, flags.port);
  } catch (error) {
    console.error(describeListenError(error, flags, args));
    return listenExitCode(error);
  }
  for (const stream of [process.stdout, process.stderr]) {
    // A closed stdout must not take the supervisor down.
    stream.on?.("error", () => {});
  }
  const log = (line: string) => {
    try {
      console.error(line);
    } catch {
      // As above.
    }
  };
  const supervisor = new Supervisor(flags.workers, port, await workerStarter(args), log);
  let signals = 0;
  let forceTimer: ReturnType<typeof setTimeout> | undefined;
  let stopWaiting!: () => void;
  const waitedEnough = new Promise<void>((resolve) => stopWaiting = resolve);
  const removeSignalListeners = onShutdownSignal(() => {
    signals++;
    if (signals === 1) {
      log("Shutting down");
      supervisor.stop();
    } else if (signals === 2) {
      log("Forcing exit");
      supervisor.kill();
      // Killed processes exit at once: wait for that, briefly, so that none is left unreaped.
      forceTimer = setTimeout(stopWaiting, FORCED_EXIT_MS);
    }
  });
  try {
    const failed = await Promise.race([supervisor.start(), waitedEnough.then(() => undefined)]);
    if (signals === 0 && failed !== undefined) return failed;
    if (signals === 0) {
      const workers = { count: flags.workers, pids: supervisor.pids };
      printBanner(flags.host, port, target, { tls: flags.cert !== undefined, workers });
    }
    const code = await Promise.race([supervisor.done, waitedEnough.then(() => 130)]);
    return signals > 1 ? 130 : code;
  } finally {
    clearTimeout(forceTimer);
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

// A worker thread on Deno runs this module too, as its entry point: it waits
// for the supervisor's start message instead. No top-level await: while one
// is pending, Bun does not exit on an uncaught error, and a crashed app would
// hang instead of ending its worker.
const thread = threadScope();
if (thread) serveAsThread(thread);
else if (isEntryPoint()) main(process.argv.slice(2)).then((code) => process.exit(code));
