// Tests of the bench's process groups: a server and the processes it starts are found, stopped
// together, and a process that ignores SIGTERM is reported and killed rather than left behind.
// Real processes (bash and sleep), Linux only; they run on Deno, as the bench does.

import { test } from "node:test";
import assert from "node:assert/strict";
import { groupMembers, signalGroup, spawnGroup, stopGroup } from "./_process_group.ts";
import { within } from "../../_test_utils.ts";

const onDeno = "Deno" in globalThis;
const LIMITS = { stopTimeoutMs: 5_000, exitTimeoutMs: 1_000 };

/**
 * Starts `script` with bash as a group leader, and waits for its first stdout line: the pids
 * it prints once its children have started.
 */
async function startGroup(script: string): Promise<{ child: Deno.ChildProcess; pids: number[] }> {
  const child = spawnGroup(["bash", "-c", script], { stdout: "piped", stderr: "null" });
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { done, value } = await within(reader.read(), 5_000, "the children's pids");
    if (done) break;
    text += value;
  }
  reader.releaseLock();
  child.stdout.cancel().catch(() => {});
  return { child, pids: text.trim().split(/\s+/).map(Number) };
}

test(
  "stopGroup() stops a leader and its children, and groupMembers() lists them until then",
  { skip: !onDeno && "needs Deno" },
  async () => {
    const { child, pids } = await startGroup("sleep 30 & a=$!; sleep 30 & echo $a $!; wait");
    const members = await groupMembers(child.pid);
    assert.deepEqual(members.toSorted(), [child.pid, ...pids].toSorted());
    assert.deepEqual(await stopGroup(child, LIMITS), []);
    assert.deepEqual(await groupMembers(child.pid), []);
    assert.equal((await child.status).signal, "SIGTERM");
  },
);

test(
  "stopGroup() kills and reports a child that ignores SIGTERM after its leader has exited",
  { skip: !onDeno && "needs Deno" },
  async () => {
    // The subshell says its pid once it ignores SIGTERM; an ignored signal stays ignored
    // across exec, so sleep outlives bash.
    const { child, pids } = await startGroup("(trap '' TERM; echo $BASHPID; exec sleep 30) & wait");
    const left = await stopGroup(child, LIMITS);
    assert.deepEqual(left, pids);
    assert.deepEqual(await groupMembers(child.pid), []);
  },
);

test(
  "signalGroup() says false for a group with no process left",
  { skip: !onDeno && "needs Deno" },
  async () => {
    const { child } = await startGroup("echo; exit 0");
    await child.status;
    assert.equal(signalGroup(child.pid, "SIGTERM"), false);
  },
);
