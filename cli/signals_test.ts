// Tests for cli/signals.ts: SIGINT and SIGTERM shut brick down gracefully,
// once, however many wrappers pass the same Ctrl+C on; a later second one
// forces the exit.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import process from "node:process";
import { test } from "../_test_skips.ts";
import { ECHO_WINDOW_MS, signalMeanings } from "./signals.ts";
import {
  brickCommand,
  type Client,
  connect,
  delay,
  deno,
  type ExitStatus,
  isGroupRunning,
  killGroup,
  MAIN,
  Output,
  RUNTIME,
  spawnChild,
  startBrick,
  TIMEOUT,
  withTempDir,
} from "./_test_cli.ts";

test("signalMeanings() takes a signal within the window for an echo and a later one as forcing", () => {
  const meaning = signalMeanings(500);
  assert.equal(meaning(10_000), "shut down");
  assert.equal(meaning(10_002), "echo");
  assert.equal(meaning(10_499), "echo");
  assert.equal(meaning(10_500), "force");
  assert.equal(meaning(20_000), "force");
});

test("brick CLI shuts down gracefully and exits 0 on SIGTERM and SIGINT", async () => {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    const { brick, url } = await startBrick();
    try {
      await (await fetch(url)).text();
      brick.kill(signal);
      const status = await brick.exit();
      await brick.stderr.done;
      assert.equal(status.code, 0, `after ${signal}: ${brick.stderr.text}`);
      assert.equal(brick.stderr.text, "Shutting down\n");
    } finally {
      await brick.close();
    }
  }
});

test("brick CLI exits 130 at once on a second SIGINT a moment after the first", async () => {
  const { brick, port } = await startBrick();
  try {
    using conn = await connect(port);
    const { received } = conn;
    await conn.write("GET / HTTP/1.1\r\n");
    await delay(100);
    brick.kill("SIGINT");
    await brick.stderr.waitFor(/Shutting down\n/);
    await delay(ECHO_WINDOW_MS + 300);
    const started = Date.now();
    brick.kill("SIGINT");
    const status = await brick.exit();
    assert.equal(status.code, 130);
    assert.ok(Date.now() - started < 2000, "the second SIGINT does not wait for the request");
    await brick.stderr.done;
    assert.equal(brick.stderr.text, "Shutting down\nForcing exit\n");
    await received.done;
  } finally {
    await brick.close();
  }
});

test("brick CLI takes a second SIGINT or SIGTERM at once after the first for its echo", async () => {
  for (const [first, second] of [["SIGINT", "SIGINT"], ["SIGTERM", "SIGINT"]] as const) {
    const { brick, port } = await startBrick();
    try {
      using conn = await connect(port);
      await conn.write("GET / HTTP/1.1\r\n");
      await delay(100);
      brick.kill(first);
      brick.kill(second);
      await brick.stderr.waitFor(/Shutting down\n/);
      await delay(ECHO_WINDOW_MS + 300);
      assert.equal(brick.stderr.text, "Shutting down\n", `${first} then ${second}: no forcing`);
      await conn.write("Host: x\r\n\r\n");
      const [response] = await conn.received.responses(1);
      assert.equal(response.body, "Hello, World!", "the request in flight is answered");
      assert.equal((await brick.exit()).code, 0);
    } finally {
      await brick.close();
    }
  }
});

// ─── Wrappers ──────────────────────────────────────────────────────────────
// Each test below starts brick the way a user does, through a wrapper, as
// the leader of a new process group, and sends SIGINT to the whole group, as
// a terminal does on Ctrl+C. A request is in flight: its head is half sent.
// The shutdown must be graceful (the request is answered once its head is
// complete, after the echo window) and brick must print "Shutting down" and
// never "Forcing exit". Exit codes: `npx` runs its command through `sh -c`,
// and Debian's dash ends itself with the SIGINT it got once its child has
// exited, whatever the child's code; npm then ends itself the same way. So
// for npx the test judges brick's output, and that the whole group is gone.

/** The project's root: where main.ts is in the source, npm/ in the build. */
const ROOT = dirname(MAIN);
/** Whether the tests run against the source (Deno) rather than the npm build (Node, Bun). */
const SOURCE = MAIN.endsWith(".ts");
/** How long a wrapper may take to start brick: npx resolves its package from the npm cache. */
const START_TIMEOUT = 60_000;

/** A wrapper to test, and what its exit may be after brick has exited 0. */
interface Wrapper {
  command: string;
  args: string[];
  cwd: string;
  /** Exit statuses the wrapper may end with when brick exits 0. */
  exits: ExitStatus[];
}

const EXIT_0: ExitStatus = { code: 0, signal: null };
/** npx through dash: dash and then npm end themselves with the SIGINT they got. */
const NPX_EXITS: ExitStatus[] = [EXIT_0, { code: 130, signal: null }, {
  code: null,
  signal: "SIGINT",
}];

/** Runs `wrapper` in a new process group and checks that one Ctrl+C shuts brick down gracefully. */
async function checkCtrlC(wrapper: Wrapper): Promise<void> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (value !== undefined) env[name] = value;
  }
  env.NO_COLOR = "1";
  env.npm_config_update_notifier = "false";
  const child = spawnChild(wrapper.command, wrapper.args, env, {
    cwd: wrapper.cwd,
    detached: true,
  });
  const stdout = new Output(child.stdout);
  const stderr = new Output(child.stderr);
  let conn: Client | undefined;
  try {
    const exitedEarly = child.status.then((status) => {
      throw new Error(`${wrapper.command} exited with ${JSON.stringify(status)}: ${stderr.text}`);
    });
    const [, port] = await Promise.race([
      stdout.waitFor(/Local:\s+http:\/\/127\.0\.0\.1:(\d+)\//, START_TIMEOUT),
      exitedEarly,
    ]);
    exitedEarly.catch(() => {});
    conn = await connect(Number(port));
    await conn.write("GET / HTTP/1.1\r\n");
    await delay(100);
    killGroup(child.pid, "SIGINT");
    await stderr.waitFor(/^Shutting down$/m);
    // Past the window, a wrapper's echo would have forced the exit by now.
    await delay(ECHO_WINDOW_MS + 500);
    assert.doesNotMatch(stderr.text, /Forcing exit/);
    await conn.write("Host: x\r\n\r\n");
    const [response] = await conn.received.responses(1);
    assert.equal(response.statusLine, "HTTP/1.1 200 OK");
    assert.equal(response.body, "Hello, World!", "the request in flight is answered");
    const timer = setTimeout(() => killGroup(child.pid, "SIGKILL"), TIMEOUT);
    const status = await child.status;
    clearTimeout(timer);
    await Promise.all([stdout.done, stderr.done]);
    assert.equal(stderr.text.match(/Shutting down/g)?.length, 1, stderr.text);
    assert.doesNotMatch(stderr.text, /Forcing exit/);
    assert.ok(
      wrapper.exits.some((exit) => exit.code === status.code && exit.signal === status.signal),
      `${wrapper.command} ended with ${JSON.stringify(status)}; stderr: ${stderr.text}`,
    );
    // The group is gone: no brick is left behind the wrapper.
    const deadline = Date.now() + 5_000;
    while (isGroupRunning(child.pid) && Date.now() < deadline) await delay(50);
    assert.equal(isGroupRunning(child.pid), false, "every process of the group has exited");
  } finally {
    conn?.[Symbol.dispose]();
    killGroup(child.pid, "SIGKILL");
    await child.status.catch(() => {});
  }
}

/** The directory of the Deno that runs the tests, to put `deno` on the PATH of `deno task`. */
function denoDir(): string {
  return dirname(deno!.execPath());
}

/** Why `npx -y <spec>` cannot run here offline, or false when it can. */
function npxMissing(spec: string): string | false {
  try {
    execFileSync("npx", ["-y", "--offline", spec, "--version"], {
      stdio: "ignore",
      timeout: START_TIMEOUT,
    });
    return false;
  } catch {
    return `npx cannot run ${spec} from its cache`;
  }
}

test("brick CLI shuts down gracefully once on Ctrl+C under npx -y deno@2.9.6 run", {
  skip: !SOURCE ? "runs main.ts from the source, on Deno" : npxMissing("deno@2.9.6"),
}, async () => {
  await checkCtrlC({
    command: "npx",
    args: ["-y", "deno@2.9.6", "run", "--allow-net", "main.ts", "-p", "0", "-H", "127.0.0.1"],
    cwd: ROOT,
    exits: NPX_EXITS,
  });
});

test("brick CLI shuts down gracefully once on Ctrl+C under deno task start", {
  skip: SOURCE && deno ? false : "runs deno.json's start task, on Deno",
}, async () => {
  const path = `${denoDir()}:${process.env.PATH ?? "/usr/bin:/bin"}`;
  await checkCtrlC({
    command: "sh",
    args: ["-c", 'PATH="$1" exec deno task start -p 0 -H 127.0.0.1', "sh", path],
    cwd: ROOT,
    exits: [EXIT_0],
  });
});

test("brick CLI shuts down gracefully once on Ctrl+C under a wrapper that passes signals on", async () => {
  // What npm, yarn or a process manager does: it passes the SIGINT it got
  // from the terminal on to its child, which has had it from the terminal too.
  await withTempDir({}, async (dir) => {
    const wrapper = join(dir, "wrapper.mjs");
    writeFileSync(
      wrapper,
      'import { spawn } from "node:child_process";\n' +
        'import process from "node:process";\n' +
        "const [command, ...args] = JSON.parse(process.argv[2]);\n" +
        'const child = spawn(command, args, { stdio: "inherit" });\n' +
        'for (const signal of ["SIGINT", "SIGTERM"]) {\n' +
        "  process.on(signal, () => child.kill(signal));\n" +
        "}\n" +
        'child.on("exit", (code) => process.exit(code ?? 1));\n',
    );
    const [command, args] = brickCommand(["-p", "0", "-H", "127.0.0.1"], {});
    // Node itself runs the wrapper: it reports its child's exit code as is.
    await checkCtrlC({
      command: "node",
      args: [wrapper, JSON.stringify([command, ...args])],
      cwd: ROOT,
      exits: [EXIT_0],
    });
  });
});

test("brick CLI shuts down gracefully once on Ctrl+C under node", {
  skip: SOURCE || RUNTIME !== "Node" ? "runs the npm build's main.js, on Node" : false,
}, async () => {
  await checkCtrlC({
    command: process.execPath,
    args: [MAIN, "-p", "0", "-H", "127.0.0.1"],
    cwd: ROOT,
    exits: [EXIT_0],
  });
});

test("brick CLI shuts down gracefully once on Ctrl+C under npx -y bun@1.3.14", {
  skip: SOURCE || RUNTIME !== "Node"
    ? "runs the npm build's main.js, from the Node tests"
    : npxMissing("bun@1.3.14"),
}, async () => {
  await checkCtrlC({
    command: "npx",
    args: ["-y", "bun@1.3.14", MAIN, "-p", "0", "-H", "127.0.0.1"],
    cwd: ROOT,
    exits: NPX_EXITS,
  });
});

test("brick CLI shuts down gracefully once on Ctrl+C under npm's bin shim (npx brick)", {
  skip: SOURCE || RUNTIME !== "Node" || !existsSync(join(ROOT, "package.json"))
    ? "installs the npm build's tarball, from the Node tests"
    : false,
}, async () => {
  await withTempDir({}, async (dir) => {
    const npm = (args: string[], cwd: string) =>
      execFileSync("npm", [...args, "--no-audit", "--no-fund", "--loglevel=error"], {
        cwd,
        encoding: "utf8",
        timeout: START_TIMEOUT,
      });
    const [packed] = JSON.parse(npm(["pack", "--json", "--pack-destination", dir], ROOT));
    writeFileSync(join(dir, "package.json"), '{ "name": "consumer", "private": true }\n');
    npm(["install", "--offline", join(dir, packed.filename)], dir);
    await checkCtrlC({
      command: "npx",
      // After "--", the flags are brick's, not npm's.
      args: ["--no", "--", "brick", "-p", "0", "-H", "127.0.0.1"],
      cwd: dir,
      exits: NPX_EXITS,
    });
  });
});
