/**
 * The `brick` command line from arguments to exit code: reads the flags,
 * answers `--help` and `--version`, checks permissions, decides what to
 * serve, and then either serves ({@linkcode runServer}) or supervises
 * `--workers` ({@linkcode superviseWorkers}).
 *
 * @module
 */

import { type Handler, VERSION } from "../mod.ts";
import { createHandler, resolveTarget, type Target } from "./app.ts";
import {
  canListen,
  CliError,
  permissionHint,
  readPermissionHint,
  unreadableFile,
} from "./errors.ts";
import { type Flags, formatHelp, parseFlags, USAGE, UsageError } from "./flags.ts";
import { proxyHandler } from "./proxy.ts";
import { readTlsFiles, runServer, type TlsFiles } from "./server.ts";
import { processWorkerRole, type WorkerRole } from "./worker.ts";
import { checkWorkerSupport, superviseWorkers } from "./workers.ts";

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
 * import { main } from "./cli/run.ts";
 * process.exit(await main(["--port", "8080", "app.ts"]));
 * ```
 */
export async function main(args: string[]): Promise<number> {
  return await runCli(args, processWorkerRole());
}

/** Runs the command line as the whole server, or as one worker of a supervisor (`role`). */
export async function runCli(args: string[], role: WorkerRole | undefined): Promise<number> {
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
  let handler: Handler & { close?(): void };
  try {
    tls = readTlsFiles(flags);
    target = resolveTarget(flags);
    if (role === undefined && flags.workers > 1) {
      checkWorkerSupport(flags, args);
      return await superviseWorkers(flags, args, target);
    }
    handler = await createServedHandler(target, flags, args);
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
  try {
    return await runServer({ flags, args, target, tls, handler, role });
  } finally {
    handler.close?.();
  }
}

/**
 * The handler for the target, behind the `--proxy` mounts when there are
 * some: they take their paths, and the folder or app the rest (a 404 when
 * there is neither). Its `close()` closes the idle upstream connections.
 */
async function createServedHandler(
  target: Target,
  flags: Flags,
  args: string[],
): Promise<Handler & { close?(): void }> {
  if (flags.proxy.length === 0) return await createHandler(target, flags, args);
  const fallback = target.kind === "hello" ? undefined : await createHandler(target, flags, args);
  return proxyHandler(flags.proxy, {
    cacheBytes: flags.cacheBytes,
    fallback,
    headers: flags.headers,
    cors: flags.cors,
  });
}
