/**
 * Child processes of `deno task bench`: starting them pinned, bounding them in time, stopping
 * them on Ctrl-C.
 *
 * @module
 */

import { signalGroup, spawnGroup, stopGroup } from "./_process_group.ts";
import { GROUP_EXIT_TIMEOUT_MS, STOP_TIMEOUT_MS, WANTED_FILE_LIMIT } from "./_config.ts";
import { type RunningServer, ServerFailure } from "./_running.ts";

export const children = new Set<Deno.ChildProcess>();
/**
 * The children that lead a process group of their own (the servers): signals go to the whole
 * group, so that a server's worker processes are stopped with it.
 */
const groupLeaders = new WeakSet<Deno.ChildProcess>();
/** Set on Ctrl-C; no process is started after it. */
let interrupted = false;

/** Whether Ctrl-C stopped the run. */
export function isInterrupted(): boolean {
  return interrupted;
}

/** Names joined by commas in lines of at most 100 characters, those after the first indented. */
// ─── Processes ──────────────────────────────────────────────────────────────

/** Runs a command to completion and returns its stdout, or undefined if it is not on PATH. */
export async function commandOutput(command: string, args: string[]): Promise<string | undefined> {
  try {
    const { stdout } = await new Deno.Command(command, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).output();
    return new TextDecoder().decode(stdout);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/** Checks for wrk, taskset, bash and two CPUs; returns an explanation of what is missing. */
export async function checkPrerequisites(): Promise<string | undefined> {
  if (await commandOutput("wrk", ["-v"]) === undefined) {
    return "wrk is not installed (not found on PATH). Install it, e.g. on Debian or Ubuntu:\n" +
      "  sudo apt-get install -y wrk";
  }
  if (await commandOutput("taskset", ["-V"]) === undefined) {
    return "taskset is not installed (not found on PATH); it comes with util-linux, e.g.\n" +
      "  sudo apt-get install -y util-linux";
  }
  if (await commandOutput("bash", ["-c", "true"]) === undefined) {
    return "bash is not on PATH; the bench uses it to raise the open-files limit (ulimit -n)";
  }
  const cpus = Number(await commandOutput("nproc", []));
  if (cpus < 2) {
    return `the benchmark pins the servers and their clients to separate CPUs but nproc ` +
      `reports ${cpus}`;
  }
  return undefined;
}

/** The open-files limit every server and client gets: the hard limit, up to 65535. */
export async function fileLimit(): Promise<number> {
  const hard = (await commandOutput("bash", ["-c", "ulimit -Hn"]))?.trim() ?? "";
  return hard === "unlimited" ? WANTED_FILE_LIMIT : Math.min(WANTED_FILE_LIMIT, Number(hard) || 0);
}

/**
 * A command line running `command` pinned to `cpu` (or on every CPU when `cpu` is undefined)
 * with the open-files limit raised. Both bash and taskset exec, so the process started is in
 * the end the command's own.
 */
export function pinned(cpu: string | undefined, files: number, command: string[]): string[] {
  const taskset = cpu === undefined ? [] : ["taskset", "-c", cpu];
  return ["bash", "-c", 'ulimit -n "$0" && exec "$@"', String(files), ...taskset, ...command];
}

/**
 * Starts a child process and tracks it until it exits. With `group`, the child leads a process
 * group of its own ({@linkcode spawnGroup}), which every process it starts joins:
 * {@linkcode killQuietly} then signals the whole group.
 */
export function spawnTracked(
  command: string[],
  options: Deno.CommandOptions,
  group = false,
): Deno.ChildProcess {
  if (interrupted) throw new Error("interrupted");
  const child = group
    ? spawnGroup(command, options)
    : new Deno.Command(command[0], { ...options, args: command.slice(1) }).spawn();
  children.add(child);
  if (group) groupLeaders.add(child);
  child.status.finally(() => children.delete(child));
  return child;
}

/**
 * Sends SIGTERM, then SIGKILL if the process has not exited in time, and waits for it. For the
 * leader of a process group, both go to the whole group.
 */
export async function stopProcess(child: Deno.ChildProcess): Promise<void> {
  killQuietly(child, "SIGTERM");
  const timer = setTimeout(() => killQuietly(child, "SIGKILL"), STOP_TIMEOUT_MS);
  try {
    await child.status;
  } finally {
    clearTimeout(timer);
  }
}

/** Signals a child, or its whole process group if it leads one; ignores one that is gone. */
export function killQuietly(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    if (groupLeaders.has(child)) signalGroup(child.pid, signal);
    else child.kill(signal);
  } catch {
    // Already exited.
  }
}

/**
 * Stops a server with its process group, and checks that no process of the group is left: a
 * worker still there once the server has exited (and {@linkcode GROUP_EXIT_TIMEOUT_MS} has
 * passed) is killed, and the run fails with a {@linkcode ServerFailure} that names it.
 */
export async function stopServer(running: RunningServer): Promise<void> {
  const left = await stopGroup(running.child, {
    stopTimeoutMs: STOP_TIMEOUT_MS,
    exitTimeoutMs: GROUP_EXIT_TIMEOUT_MS,
  });
  if (left.length === 0) return;
  throw new ServerFailure(
    `left ${left.length} process(es) of its group running after it exited ` +
      `(pids ${left.join(", ")}); the bench killed them`,
    running.stderrTail(),
  );
}

export function describeExit(
  { code, signal }: Pick<Deno.CommandStatus, "code" | "signal">,
): string {
  return signal === null ? `exit code ${code}` : `stopped by ${signal}`;
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Result of {@linkcode runBounded}. */
interface BoundedResult {
  success: boolean;
  /** How the process ended, e.g. "exit code 1" or "stopped after 300 s". */
  exit: string;
  stdout: string;
  /** stdout and stderr, as text. */
  output: string;
}

/**
 * Runs a helper command (a build, an install) to completion with its output captured, stopping
 * it if it takes longer than `timeoutMs`. Throws Deno.errors.NotFound if it is not on PATH.
 */
export async function runBounded(
  command: string[],
  timeoutMs: number,
  cwd?: string,
): Promise<BoundedResult> {
  const child = spawnTracked(command, {
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    stopProcess(child).catch(() => {});
  }, timeoutMs);
  try {
    const { success, stdout, stderr, ...status } = await child.output();
    const decoder = new TextDecoder();
    return {
      success: success && !timedOut,
      exit: timedOut ? `stopped after ${timeoutMs / 1000} s` : describeExit(status),
      stdout: decoder.decode(stdout),
      output: (decoder.decode(stdout) + decoder.decode(stderr)).trim(),
    };
  } finally {
    clearTimeout(timer);
  }
}

/** The last `lines` lines of a command's output, indented, for an error message. */
export function outputTail(output: string, lines = 15): string {
  return output.split("\n").slice(-lines).map((line) => `  ${line}`).join("\n");
}

/**
 * On Ctrl-C, stops the running children and sets {@linkcode interrupted}, so the run unwinds
 * through its normal clean-up; a second Ctrl-C exits at once.
 */
export function interruptOnSignal(): () => void {
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  const handler = () => {
    if (interrupted) Deno.exit(130);
    interrupted = true;
    console.error("\nInterrupted: stopping servers and clients (again to quit at once).");
    for (const child of children) killQuietly(child, "SIGTERM");
  };
  for (const signal of signals) Deno.addSignalListener(signal, handler);
  return () => signals.forEach((signal) => Deno.removeSignalListener(signal, handler));
}
