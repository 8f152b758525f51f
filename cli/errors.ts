/**
 * Errors that stop brick before it serves, in words a user can act on:
 * missing Deno permissions (with the command to run instead), an address in
 * use, a certificate the TLS library refuses; and the exit code of each.
 *
 * @module
 */

import { resolve } from "node:path";
import { formatHost } from "./banner.ts";
import { brickCommand, shellQuote } from "./command.ts";
import { DEFAULT_HOST, DEFAULT_PORT, type Flags, readsFiles, servedPath } from "./flags.ts";

/** Deno's API where this runs on Deno; undefined on Node and Bun. */
const deno: typeof Deno | undefined = (globalThis as { Deno?: typeof Deno }).Deno;

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
export function canListen(flags: Flags): boolean {
  if (flags.unix === undefined) {
    return granted({ name: "net", host: `${formatHost(flags.host)}:${flags.port}` });
  }
  const path = resolve(flags.unix);
  return granted({ name: "net", host: `unix:${path}` }) && granted({ name: "read", path }) &&
    granted({ name: "write", path });
}

/** Whether the file or folder at `path` may be read. */
export function canRead(path: string): boolean {
  return granted({ name: "read", path });
}

/** The first file brick must read (app, folder, certificate, key) that it may not, if any. */
export function unreadableFile(flags: Flags): string | undefined {
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
export function listenExitCode(error: unknown): 1 | 2 {
  return tlsSetupProblem(error) === undefined ? 1 : 2;
}

/** The Deno permissions and flags that brick needs to run with `flags`. */
export function denoFlags(flags: Flags): string[] {
  const needed = ["--allow-net"];
  if (readsFiles(flags) || flags.workers > 1) needed.push("--allow-read");
  if (flags.unix !== undefined) needed.push("--allow-write");
  if (flags.workers > 1) needed.push("--unstable-net");
  return needed;
}

/** The command to run instead: the same arguments, with what Deno needs for them. */
export function commandFor(flags: Flags, args: string[]): string {
  return [brickCommand(denoFlags(flags)), ...args.map(shellQuote)].join(" ");
}

export function permissionHint(flags: Flags, args: string[]): string {
  if (flags.unix !== undefined) {
    return `Cannot listen on ${listenAddress(flags)}: ` +
      "a Unix socket needs network, read and write access\n" +
      `Run it with them instead: ${commandFor(flags, args)}`;
  }
  return `Cannot listen on ${listenAddress(flags)}: network access is not allowed\n` +
    `Run it with network access instead: ${commandFor(flags, args)}`;
}

export function readPermissionHint(name: string, flags: Flags, args: string[]): string {
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
