/**
 * A bench server's life: started in a process group, its port read, its memory read, stopped.
 *
 * @module
 */

import { basename } from "node:path";
import { groupMembers } from "./_process_group.ts";
import { SERVER_CPU, STARTUP_TIMEOUT_MS, STDERR_TAIL_CHARS } from "./_config.ts";
import type { Preparation } from "./_prepare.ts";
import { delay, describeExit, pinned, spawnTracked, stopProcess } from "./_processes.ts";
import type { Scenario } from "./_scenarios.ts";
import type { ReadyServer } from "./_servers.ts";

// ─── Running servers ────────────────────────────────────────────────────────

/** A server process started by the benchmark. */
export interface RunningServer {
  child: Deno.ChildProcess;
  port: number;
  /** Set once the process has exited, with how it exited. */
  exit?: string;
  /** The last {@linkcode STDERR_TAIL_CHARS} characters the server wrote to stderr. */
  stderrTail: () => string;
}

/** A server run that failed, for the report. */
export interface Failure {
  /** Scenario, round and server, with what went wrong, on one line. */
  summary: string;
  /** The end of the server's stderr, if it wrote any. */
  stderr: string;
}

/** A server failed to start or died under load; carries the end of its stderr. */
export class ServerFailure extends Error {
  constructor(message: string, readonly stderr: string) {
    super(message);
  }
}

/** A bench server's line telling its port. */
const LISTENING_LINE = /^LISTENING (\d+)\r?$/m;

/**
 * Reads stdout until the line telling the port (`pattern`, the port in group 1), then keeps
 * draining it in the background.
 */
async function readListeningPort(child: Deno.ChildProcess, pattern: RegExp): Promise<number> {
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    reader.cancel().catch(() => {});
  }, STARTUP_TIMEOUT_MS);
  let buffered = "";
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      buffered += value;
      const match = buffered.match(pattern);
      if (match) {
        drain(reader);
        return Number(match[1]);
      }
    }
  } finally {
    clearTimeout(timer);
  }
  const line = pattern === LISTENING_LINE ? `"LISTENING <port>"` : `a line matching ${pattern}`;
  throw new Error(
    timedOut
      ? `did not print ${line} within ${STARTUP_TIMEOUT_MS / 1000} s`
      : `closed stdout before printing ${line}`,
  );
}

export function drain(reader: ReadableStreamDefaultReader<string>): void {
  (async () => {
    while (!(await reader.read()).done) {
      // Discard.
    }
  })().catch(() => {});
}

/**
 * Copies a process's stderr to ours as it comes and keeps its last
 * {@linkcode STDERR_TAIL_CHARS} characters; returns a function reading them.
 */
export function teeStderr(stream: ReadableStream<Uint8Array>): () => string {
  let tail = "";
  const decoder = new TextDecoder();
  (async () => {
    for await (const chunk of stream) {
      await Deno.stderr.write(chunk);
      tail = (tail + decoder.decode(chunk, { stream: true })).slice(-STDERR_TAIL_CHARS);
    }
  })().catch(() => {});
  return () => tail.trim();
}

/**
 * Starts a server for a scenario, in a process group of its own, pinned to the server CPU
 * unless the scenario pins nothing, and waits until it listens.
 */
export async function startServer(
  server: ReadyServer,
  scenario: Scenario,
  preparation: Preparation,
): Promise<RunningServer> {
  const args = [];
  if (server.benchArgs ?? true) {
    args.push("--scenario", scenario.name);
    if (scenario.name === "static") args.push("--root", preparation.staticDir);
  }
  const cpu = scenario.pinned ?? true ? SERVER_CPU : undefined;
  const child = spawnTracked(pinned(cpu, preparation.files, [...server.command, ...args]), {
    env: server.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }, true);
  const stderrTail = teeStderr(child.stderr);
  try {
    const port = await readListeningPort(child, server.portLine ?? LISTENING_LINE);
    const running: RunningServer = { child, port, stderrTail };
    child.status.then((status) => running.exit = describeExit(status));
    return running;
  } catch (error) {
    await stopProcess(child);
    const message = error instanceof Error ? error.message : error;
    throw new ServerFailure(
      `${message} (${describeExit(await child.status)})`,
      stderrTail(),
    );
  }
}

/** A process's resident memory now (VmRSS) and at its peak (VmHWM), in KiB. */
interface Memory {
  rssKiB: number;
  peakKiB: number;
}

/**
 * Reads a server's memory from `/proc/<pid>/status`, after checking that the pid is the
 * server's and not a wrapper's (bash or taskset, which should have exec'd).
 */
export async function readMemory(running: RunningServer): Promise<Memory> {
  const pid = running.child.pid;
  let status, exe;
  try {
    exe = basename(await Deno.readLink(`/proc/${pid}/exe`));
    status = await Deno.readTextFile(`/proc/${pid}/status`);
  } catch (error) {
    if (running.exit !== undefined || error instanceof Deno.errors.NotFound) {
      throw new ServerFailure(
        `exited before its memory was read (${running.exit ?? "gone"})`,
        running.stderrTail(),
      );
    }
    throw error;
  }
  if (exe === "bash" || exe === "taskset") {
    throw new Error(`pid ${pid} is ${exe}, not the server: its memory would be the wrapper's`);
  }
  const field = (name: string) =>
    Number(status.match(new RegExp(`^${name}:\\s+(\\d+) kB`, "m"))?.[1]);
  const memory = { rssKiB: field("VmRSS"), peakKiB: field("VmHWM") };
  if (Number.isNaN(memory.rssKiB) || Number.isNaN(memory.peakKiB)) {
    throw new Error(`/proc/${pid}/status has no VmRSS or VmHWM line`);
  }
  return memory;
}

/**
 * The peak resident memory of a server of several processes: the sum of the VmHWM of every
 * live process of its group, in KiB. Each process peaked at its own moment, so the sum is an
 * upper bound of the group's peak. Threads (Deno's workers) count once, with their process.
 */
export async function readGroupPeak(running: RunningServer): Promise<number> {
  const own = await readMemory(running);
  let sum = own.peakKiB;
  for (const pid of await groupMembers(running.child.pid)) {
    if (pid === running.child.pid) continue;
    try {
      const status = await Deno.readTextFile(`/proc/${pid}/status`);
      sum += Number(status.match(/^VmHWM:\s+(\d+) kB/m)?.[1] ?? 0);
    } catch {
      // Exited meanwhile: a worker that died shows in the server's own checks.
    }
  }
  return sum;
}

/** Clock ticks per second of `/proc/<pid>/stat`'s times (`getconf CLK_TCK`, 100 on Linux). */
const CLOCK_TICKS_PER_SEC = 100;

/**
 * The CPU time a server has used so far, user and system, every thread, in seconds, from
 * `/proc/<pid>/stat`; with `group`, summed over every live process of its group (workers).
 */
export async function readCpuSeconds(running: RunningServer, group = false): Promise<number> {
  const pids = group ? await groupMembers(running.child.pid) : [running.child.pid];
  if (!pids.includes(running.child.pid)) pids.push(running.child.pid);
  let ticks = 0;
  for (const pid of pids) {
    let stat;
    try {
      stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    } catch {
      continue; // exited meanwhile; the server's own exit is checked after the run
    }
    // Fields after the command name, which is in parentheses and may hold spaces:
    // state is field 3, utime field 14 and stime field 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / CLOCK_TICKS_PER_SEC;
}

/** Fails with the server's exit (and the end of its stderr) if it has exited. */
export async function assertAlive(running: RunningServer, phase: string): Promise<void> {
  // Give an exit that happened during the load the time to be noticed.
  await delay(50);
  if (running.exit !== undefined) {
    throw new ServerFailure(`exited during the ${phase} (${running.exit})`, running.stderrTail());
  }
}
