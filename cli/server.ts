/**
 * One server: reads the `--cert` and `--key` files, wraps the handler for
 * `--debug-worker`, the access log and `--verbose`, listens where the flags
 * say, prints the banner, and shuts down on SIGINT or SIGTERM (or when the
 * supervisor asks a worker to stop).
 *
 * @module
 */

import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import process from "node:process";
import {
  type Addr,
  type Handler,
  type ResponseLogEntry,
  serve,
  type ServeInfo,
  type Server,
  type UnixAddr,
} from "../mod.ts";
import { accessLogger, batchedLines, type LineBatch, printRequestHead } from "./access_log.ts";
import type { Target } from "./app.ts";
import { printBanner, proxyBanner } from "./banner.ts";
import { CliError, describeListenError, listenExitCode } from "./errors.ts";
import type { Flags } from "./flags.ts";
import { withWorkerHeader } from "./headers.ts";
import { onShutdownSignal } from "./signals.ts";
import type { WorkerRole } from "./worker.ts";

/** Deno's API where this runs on Deno; undefined on Node and Bun. */
const deno: typeof Deno | undefined = (globalThis as { Deno?: typeof Deno }).Deno;
/** Whether this runs on Bun. */
const bun = typeof (process.versions as { bun?: string }).bun === "string";

/** The certificate chain and private key named by `--cert` and `--key`, as PEM text. */
export interface TlsFiles {
  cert: string;
  key: string;
}

/**
 * Reads the files given with `--cert` and `--key`.
 *
 * @returns Their text, or undefined without `--cert`.
 * @throws {CliError} With exit code 2 when a file cannot be read or holds no PEM block.
 */
export function readTlsFiles(flags: Flags): TlsFiles | undefined {
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

/** What the server calls besides the handler. */
interface ServerCallbacks {
  handler: Handler;
  onRequestHead?: (head: Uint8Array, info: ServeInfo) => void;
  onResponse?: (entry: ResponseLogEntry) => void;
  onListen: (addr: Addr) => void;
}

/** Starts the server where the flags say: a TCP port (with TLS if given) or a Unix socket. */
export function listenWith(
  flags: Flags,
  tls: TlsFiles | undefined,
  role: WorkerRole | undefined,
  callbacks: ServerCallbacks,
): Server<Addr> {
  const { handler, onRequestHead, onResponse, onListen } = callbacks;
  if (flags.unix !== undefined) {
    // The handler reads info.remoteAddr only through clientAddress(), which knows both kinds.
    const unixHandler = handler as unknown as Handler<UnixAddr>;
    const path = resolve(flags.unix);
    return serve({ path, handler: unixHandler, onRequestHead, onResponse, onListen });
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
    onResponse,
    onListen,
  });
}

/** What {@linkcode runServer} serves, and how. */
export interface ServerSetup {
  /** The parsed flags. */
  flags: Flags;
  /** The original arguments, for hints. */
  args: string[];
  /** What is served, for the banner. */
  target: Target;
  /** The certificate and key, for HTTPS. */
  tls: TlsFiles | undefined;
  /** The handler for what is served. */
  handler: Handler;
  /** The worker's link to its supervisor, when this server is one of `--workers`. */
  role: WorkerRole | undefined;
}

/**
 * Serves until a SIGINT or SIGTERM (or the supervisor's stop) has shut the
 * server down gracefully.
 *
 * @returns The exit code: `0` after a graceful shutdown, `1` when the server
 * cannot listen or stops on an error, `2` for a certificate to fix.
 */
export async function runServer(setup: ServerSetup): Promise<number> {
  const { flags, args, target, tls, role } = setup;
  let { handler } = setup;
  if (flags.debugWorker) handler = withWorkerHeader(handler, role);

  // Deno binds inside serve() and throws there when it cannot; Node and Bun
  // bind in the background and reject `server.finished` before onListen.
  let listening = false;
  let server: Server<Addr>;
  // One write per event-loop turn for the access log; line by line with
  // --verbose, whose request heads print at once, to keep the two in order.
  const logLines = flags.quiet || flags.verbose
    ? undefined
    : batchedLines((text) => process.stdout.write(text));
  const log = logLines ?? ((line: string) => console.log(line));
  try {
    server = listenWith(flags, tls, role, {
      handler,
      onRequestHead: flags.verbose ? printRequestHead : undefined,
      onResponse: flags.quiet ? undefined : accessLogger(log),
      onListen: (addr) => {
        listening = true;
        if (role) role.listening();
        else if (addr.transport === "unix") {
          printBanner(flags.host, 0, target, { socket: addr.path, proxy: proxyBanner(flags) });
        } else {
          printBanner(flags.host, addr.port, target, {
            tls: tls !== undefined,
            proxy: proxyBanner(flags),
          });
        }
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
  const removeStopListeners = role ? role.onStop(shutDown) : onShutdownSignal({
    shutDown() {
      console.error("Shutting down");
      shutDown();
    },
    force() {
      console.error("Forcing exit");
      process.exit(130);
    },
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
    if (logLines) await flushAccessLog(logLines);
  }
}

/**
 * Writes the access log lines still gathered and waits, at most a second,
 * until stdout has taken them: the process exits right after, and Bun drops
 * what a pipe has not yet taken.
 */
function flushAccessLog(logLines: LineBatch): Promise<void> {
  logLines.flush();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 1000);
    try {
      process.stdout.write("", () => {
        clearTimeout(timer);
        resolve();
      });
    } catch {
      clearTimeout(timer);
      resolve();
    }
  });
}
