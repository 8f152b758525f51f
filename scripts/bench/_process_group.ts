/**
 * Process groups for `deno task bench`: a server that starts workers (node:cluster, brick's CLI
 * on Node) is started as the leader of a group of its own, which its workers join, and stopped
 * as a whole, with a check that none of its processes is left behind. Linux only (`/proc`).
 *
 * @module
 */

/** How often the group is looked up while waiting for it to be gone. */
const POLL_MS = 50;

/**
 * Starts a command as the leader of a new session and process group (Deno's `detached`): every
 * process it starts joins that group unless it leaves it itself.
 *
 * @param command program and arguments
 * @param options as for `Deno.Command`, except `args` and `detached`
 * @returns the child; its pid is the group's id
 */
export function spawnGroup(
  command: string[],
  options: Omit<Deno.CommandOptions, "args" | "detached"> = {},
): Deno.ChildProcess {
  return new Deno.Command(command[0], { ...options, args: command.slice(1), detached: true })
    .spawn();
}

/**
 * Sends a signal to every process of a group.
 *
 * @param pgid the group's id, the pid of its leader
 * @param signal the signal
 * @returns false when the group has no process left to signal
 */
export function signalGroup(pgid: number, signal: Deno.Signal): boolean {
  try {
    Deno.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

/**
 * The live processes of a group, read from `/proc/<pid>/stat`. Zombies are left out: they hold
 * no memory and only wait for their parent to collect them.
 *
 * @param pgid the group's id
 * @returns their pids, in `/proc` order
 */
export async function groupMembers(pgid: number): Promise<number[]> {
  const members: number[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    let stat;
    try {
      stat = await Deno.readTextFile(`/proc/${entry.name}/stat`);
    } catch {
      continue; // Exited meanwhile.
    }
    // After "pid (comm) " come state, ppid and pgrp; comm may hold spaces and parentheses.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(pgrp) === pgid && state !== "Z") members.push(Number(entry.name));
  }
  return members;
}

/**
 * Waits until a group has no live process, or until `timeoutMs` has passed.
 *
 * @param pgid the group's id
 * @param timeoutMs the longest wait
 * @returns the pids still there at the end: empty once the group is gone
 */
export async function waitForGroupExit(pgid: number, timeoutMs: number): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  let left = await groupMembers(pgid);
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    left = await groupMembers(pgid);
  }
  return left;
}

/** Time limits of {@linkcode stopGroup}. */
export interface StopGroupOptions {
  /** How long the leader may take to exit after SIGTERM before the group gets SIGKILL. */
  stopTimeoutMs: number;
  /**
   * How long the rest of the group may take to be gone once the leader has exited (workers
   * still shutting down) before it gets SIGKILL.
   */
  exitTimeoutMs: number;
}

/**
 * Stops the group a child leads: SIGTERM to every process of it, SIGKILL if the leader has not
 * exited within `stopTimeoutMs`; then waits for the rest of the group, and kills what is still
 * there after `exitTimeoutMs`.
 *
 * @param child the group's leader, started with {@linkcode spawnGroup}
 * @param options the time limits
 * @returns the pids that were left running after the leader had exited and had to be killed:
 * empty when the group stopped as it should
 */
export async function stopGroup(
  child: Deno.ChildProcess,
  options: StopGroupOptions,
): Promise<number[]> {
  const pgid = child.pid;
  signalGroup(pgid, "SIGTERM");
  const timer = setTimeout(() => signalGroup(pgid, "SIGKILL"), options.stopTimeoutMs);
  try {
    await child.status;
  } finally {
    clearTimeout(timer);
  }
  const left = await waitForGroupExit(pgid, options.exitTimeoutMs);
  if (left.length > 0) {
    signalGroup(pgid, "SIGKILL");
    await waitForGroupExit(pgid, options.exitTimeoutMs);
  }
  return left;
}
