// Tests for cli/workers.ts and cli/worker.ts: --workers, the supervisor that
// starts, restarts and stops the workers.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import net from "node:net";
import { join } from "node:path";
import process from "node:process";
import { test } from "../_test_skips.ts";
import { ECHO_WINDOW_MS } from "./signals.ts";
import {
  APP_EXAMPLE,
  APPS,
  CLF_LINE,
  connect,
  delay,
  deno,
  denoRun,
  type ExitStatus,
  httpsGet,
  isRunning,
  MAIN,
  NO_OPENSSL,
  NO_TESTDATA,
  Output,
  type RawResponse,
  runBrick,
  SLOW_APP,
  spawnBrick,
  startBrick,
  TIMEOUT,
  withCertificates,
  withTempDir,
} from "./_test_cli.ts";

/** Deno's flags for a CLI with workers: each thread loads main.ts and listens with SO_REUSEPORT. */
const WORKERS = ["--allow-net", "--allow-read", "--unstable-net"];

/** Which worker answered, from the `x-brick-worker` header that `--debug-worker` adds. */
interface WorkerTag {
  id: number;
  pid: number;
  start: number;
}

function workerTag(response: RawResponse): WorkerTag {
  const value = response.headers.get("x-brick-worker") ?? "";
  const match = value.match(/^(\d+); pid=(\d+); start=(\d+)$/);
  assert.ok(match, `an x-brick-worker field in ${JSON.stringify([...response.headers])}`);
  return { id: Number(match[1]), pid: Number(match[2]), start: Number(match[3]) };
}

/** GETs `path` on a new connection, which the kernel or node:cluster gives to any worker. */
async function getOnce(port: number, path = "/"): Promise<RawResponse> {
  using conn = await connect(port);
  await conn.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  const [response] = await conn.received.responses(1);
  return response;
}

/**
 * Sends requests, each on a new connection, until the workers that answered
 * satisfy `enough`; fails after `max` requests.
 */
async function findWorkers(
  get: () => Promise<RawResponse>,
  enough: (tags: WorkerTag[]) => boolean,
  max = 200,
): Promise<WorkerTag[]> {
  const tags: WorkerTag[] = [];
  for (let i = 0; i < max; i++) {
    const response = await get();
    assert.equal(response.statusLine, "HTTP/1.1 200 OK");
    tags.push(workerTag(response));
    if (enough(tags)) return tags;
  }
  const seen = [...new Set(tags.map((tag) => JSON.stringify(tag)))];
  throw new Error(`After ${max} requests, only these workers answered: ${seen.join(", ")}`);
}

const bothWorkers = (tags: WorkerTag[]) => new Set(tags.map((tag) => tag.id)).size === 2;

/** The worker PIDs in the banner, or none when the workers are threads (Deno). */
function bannerPids(stdout: string): number[] {
  const match = stdout.match(/^ {2}Workers: 2 processes \(pids (\d+), (\d+)\)$/m);
  return match ? [Number(match[1]), Number(match[2])] : [];
}

test("brick CLI with --workers 2 answers from both workers, with one banner and whole log lines", async () => {
  const { brick, port } = await startBrick(["--workers", "2", "--debug-worker"], {
    permissions: WORKERS,
  });
  try {
    const banner = brick.stdout.text;
    assert.equal(banner.match(/is listening/g)?.length, 1, `one banner: ${banner}`);
    assert.match(banner, deno ? /^ {2}Workers: 2 threads$/m : /^ {2}Workers: 2 processes /m);
    const tags = await findWorkers(() => getOnce(port), bothWorkers);
    const pids = new Set(tags.map((tag) => tag.pid));
    if (deno) assert.equal(pids.size, 1, "threads of one process");
    else assert.deepEqual([...pids].sort(), bannerPids(banner).sort(), "the PIDs in the banner");

    // Many requests at once, from both workers: each log line arrives whole.
    const path = "/" + "x".repeat(600);
    await Promise.all(Array.from({ length: 40 }, () => getOnce(port, path)));
    const lines = () => brick.stdout.text.slice(banner.length).split("\n").filter(Boolean);
    const deadline = Date.now() + TIMEOUT;
    while (lines().length < tags.length + 40 && Date.now() < deadline) await delay(50);
    assert.equal(lines().length, tags.length + 40);
    for (const line of lines()) assert.match(line, CLF_LINE);
    assert.equal(brick.stderr.text, "");
  } finally {
    await brick.close();
  }
});

/**
 * An app that writes a line to stdout in two halves, 100 ms apart, while it
 * holds its process: the other worker's halves come in between.
 */
const HALF_LINES_APP = 'import process from "node:process";\n' +
  "export default (request) => {\n" +
  '  const id = new URL(request.url).searchParams.get("id");\n' +
  "  process.stdout.write(`half-line ${id} starts,`);\n" +
  "  const until = Date.now() + 100;\n" +
  "  while (Date.now() < until);\n" +
  "  process.stdout.write(` and ends ${id}\\n`);\n" +
  '  return new Response("ok\\n");\n' +
  "};\n";

test("brick CLI with --workers passes on a worker's output in whole lines", {
  skip: deno ? "Deno's workers are threads: they write to the shared stdout themselves" : false,
}, async () => {
  await withTempDir({ "halves.mjs": HALF_LINES_APP }, async (dir) => {
    const { brick, port } = await startBrick(
      [join(dir, "halves.mjs"), "--workers", "2", "--debug-worker", "--quiet"],
      { permissions: WORKERS },
    );
    try {
      const banner = brick.stdout.text;
      let sent = 0;
      // Requests at once until both workers were writing at the same time.
      for (let batch = 0; batch < 10; batch++) {
        const ids = Array.from({ length: 8 }, () => sent++);
        const tags = await Promise.all(
          ids.map(async (id) => workerTag(await getOnce(port, `/?id=${id}`))),
        );
        if (bothWorkers(tags)) break;
      }
      // Lines from two workers may come in any order: wait for all of them.
      await brick.stdout.waitFor(new RegExp(`(?:[^]*? and ends \\d+\n){${sent}}`));
      const lines = brick.stdout.text.slice(banner.length).split("\n").filter(Boolean);
      assert.equal(lines.length, sent);
      for (const line of lines) assert.match(line, /^half-line (\d+) starts, and ends \1$/);
    } finally {
      await brick.close();
    }
  });
});

test("brick CLI with --workers serves HTTPS from each worker", { skip: NO_OPENSSL }, async () => {
  await withCertificates(async (pki) => {
    const { brick, url, port } = await startBrick(
      ["--workers", "2", "--debug-worker", "--cert", pki.certFile, "--key", pki.keyFile],
      { permissions: WORKERS },
    );
    try {
      assert.equal(url, `https://127.0.0.1:${port}/`);
      await findWorkers(() => httpsGet(port, "/", pki.ca), bothWorkers);
    } finally {
      await brick.close();
    }
  });
});

test("brick CLI with --workers restarts a worker whose app crashed, and logs the restart", {
  skip: NO_TESTDATA,
}, async () => {
  const { brick, port } = await startBrick([
    join(APPS, "crash.mjs"),
    "--workers",
    "2",
    "--debug-worker",
  ], {
    permissions: WORKERS,
  });
  try {
    await findWorkers(() => getOnce(port), bothWorkers);
    const crashing = await getOnce(port, "/crash");
    assert.equal(crashing.body, "crashing\n");
    const { id, pid } = workerTag(crashing);
    const who = deno ? `worker ${id}` : `worker ${id} \\(pid ${pid}\\)`;
    await brick.stderr.waitFor(
      new RegExp(`^${who} exited with code 1; restarting in 100 ms$`, "m"),
    );
    const [, newPid] = await brick.stderr.waitFor(
      new RegExp(`^worker ${id}(?: \\(pid (\\d+)\\))? is listening$`, "m"),
    );
    if (!deno) assert.notEqual(Number(newPid), pid, "a new process");
    assert.match(brick.stderr.text, /crash requested by GET \/crash/, "the crash's error is shown");
    // The replacement, started a second time under the same number, answers beside the other.
    const tags = await findWorkers(
      () => getOnce(port),
      (tags) => tags.some((tag) => tag.id === id && tag.start === 2) && bothWorkers(tags),
    );
    assert.ok(tags.every((tag) => tag.id !== id || tag.start === 2), "the crashed one is gone");
  } finally {
    await brick.close();
  }
});

test("brick CLI with --workers replaces a worker process killed with SIGKILL", {
  skip: deno ? "Deno's workers are threads of one process" : false,
}, async () => {
  const { brick, port } = await startBrick(["--workers", "2", "--debug-worker"]);
  try {
    const [killed, other] = bannerPids(brick.stdout.text);
    process.kill(killed, "SIGKILL");
    await brick.stderr.waitFor(
      new RegExp(`^worker 1 \\(pid ${killed}\\) was killed by SIGKILL; restarting in 100 ms$`, "m"),
    );
    const [, replacement] = await brick.stderr.waitFor(/^worker 1 \(pid (\d+)\) is listening$/m);
    const tags = await findWorkers(() => getOnce(port), bothWorkers);
    assert.deepEqual(
      [...new Set(tags.map((tag) => tag.pid))].sort(),
      [Number(replacement), other].sort(),
    );
  } finally {
    await brick.close();
  }
});

test("brick CLI with --workers finishes requests in flight on SIGTERM, exits 0, leaves no worker", async () => {
  await withTempDir({ "slow.mjs": SLOW_APP }, async (dir) => {
    const { brick, port } = await startBrick(
      [join(dir, "slow.mjs"), "--workers", "2", "--debug-worker"],
      { permissions: WORKERS },
    );
    try {
      const tags = await findWorkers(() => getOnce(port), bothWorkers);
      const slow = getOnce(port, "/slow");
      await brick.stdout.waitFor(/^slow request started$/m);
      brick.kill("SIGTERM");
      const response = await slow;
      assert.equal(response.body, "done\n", "the request in flight is answered");
      const status = await brick.exit();
      await brick.stderr.done;
      assert.equal(status.code, 0, brick.stderr.text);
      assert.equal(brick.stderr.text, "Shutting down\n", "one message, from the supervisor");
      for (const pid of new Set(tags.map((tag) => tag.pid))) {
        assert.equal(isRunning(pid), false, `process ${pid} is gone`);
      }
    } finally {
      await brick.close();
    }
  });
});

test("brick CLI with --workers stops gracefully once on Ctrl+C, which signals the whole group", {
  skip: deno ? "Deno's workers are threads of one process" : false,
}, async () => {
  await withTempDir({ "slow.mjs": SLOW_APP }, async (dir) => {
    // A terminal's Ctrl+C sends SIGINT to every process of the foreground group.
    const args = [join(dir, "slow.mjs"), "--workers", "2", "-p", "0", "-H", "127.0.0.1"];
    const child = spawn(process.execPath, [MAIN, ...args], {
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NO_COLOR: "1" },
    });
    const status = new Promise<ExitStatus>((resolve) => {
      child.once("exit", (code, signal) => resolve({ code, signal }));
    });
    const stdout = new Output(child.stdout!);
    const stderr = new Output(child.stderr!);
    try {
      const [, port] = await stdout.waitFor(/Local:\s+http:\/\/127\.0\.0\.1:(\d+)\//);
      const pids = bannerPids(stdout.text);
      assert.equal(pids.length, 2, stdout.text);
      const slow = getOnce(Number(port), "/slow");
      await stdout.waitFor(/^slow request started$/m);
      process.kill(-child.pid!, "SIGINT");
      assert.equal((await slow).body, "done\n", "the worker finishes the request in flight");
      const timer = setTimeout(() => child.kill("SIGKILL"), TIMEOUT);
      assert.deepEqual(await status, { code: 0, signal: null });
      clearTimeout(timer);
      await stderr.done;
      assert.equal(
        stderr.text,
        "Shutting down\n",
        "the workers leave the signal to the supervisor",
      );
      for (const pid of pids) assert.equal(isRunning(pid), false, `process ${pid} is gone`);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await status;
    }
  });
});

test("brick CLI with --workers exits 130 at once on a second signal and leaves no worker", async () => {
  const app = SLOW_APP.replace("500", "20_000");
  await withTempDir({ "slow.mjs": app }, async (dir) => {
    const { brick, port } = await startBrick(
      [join(dir, "slow.mjs"), "--workers", "2", "--debug-worker"],
      { permissions: WORKERS },
    );
    try {
      const tags = await findWorkers(() => getOnce(port), bothWorkers);
      const stuck = getOnce(port, "/slow").catch(() => "closed");
      await brick.stdout.waitFor(/^slow request started$/m);
      brick.kill("SIGTERM");
      await brick.stderr.waitFor(/^Shutting down$/m);
      // A signal sooner than this after the first would be taken for its echo.
      await delay(ECHO_WINDOW_MS + 300);
      const started = Date.now();
      brick.kill("SIGINT");
      const status = await brick.exit();
      assert.equal(status.code, 130);
      assert.ok(Date.now() - started < 3000, "the second signal does not wait for the request");
      await brick.stderr.done;
      assert.equal(brick.stderr.text, "Shutting down\nForcing exit\n");
      assert.equal(await stuck, "closed", "the request in flight is cut off");
      for (const pid of new Set(tags.map((tag) => tag.pid))) {
        assert.equal(isRunning(pid), false, `process ${pid} is gone`);
      }
    } finally {
      await brick.close();
    }
  });
});

test("brick CLI with --workers exits 2 once when the app has no fetch handler", async () => {
  await withTempDir({ "exports.mjs": "export const foo = 1;\n" }, async (dir) => {
    const app = join(dir, "exports.mjs");
    const result = await runBrick([app, "--workers", "2", "--host", "127.0.0.1", "--port", "0"], {
      permissions: WORKERS,
    });
    assert.equal(result.code, 2);
    assert.equal(
      result.stderr,
      `Cannot serve "${app}": it has no default export (its exports: foo)\n${APP_EXAMPLE}\n`,
      "said once, by the first worker",
    );
    assert.equal(result.stdout, "");
  });
});

test("brick CLI with --workers gives up with exit 1 when a worker keeps crashing at start", {
  skip: NO_TESTDATA,
  // Five starts and 1.5 s of back-off: more than Bun's default 5 s on a loaded machine.
  timeout: 60_000,
}, async () => {
  const brick = spawnBrick(
    [join(APPS, "crash_soon.mjs"), "--workers", "2", "--host", "127.0.0.1", "--port", "0"],
    { permissions: WORKERS },
  );
  try {
    const status = await brick.exit(20_000);
    await brick.stderr.done;
    const stderr = brick.stderr.text;
    assert.equal(status.code, 1, stderr);
    assert.match(
      stderr,
      /^worker \d+(?: \(pid \d+\))? exited with code 1; giving up: it ended 5 times in a row within 10 s of its start \(its errors are above\)$/m,
    );
    for (const delay of [100, 200, 400, 800]) {
      assert.match(stderr, new RegExp(`exited with code 1; restarting in ${delay} ms$`, "m"));
    }
  } finally {
    await brick.close();
  }
});

test("brick CLI with --workers exits 1 when the port is taken, before starting any", async () => {
  const listener = net.createServer();
  await new Promise<void>((resolve) => listener.listen({ host: "127.0.0.1", port: 0 }, resolve));
  const { port } = listener.address() as net.AddressInfo;
  try {
    const result = await runBrick(
      ["--workers", "2", "--host", "127.0.0.1", "--port", String(port)],
      {
        permissions: WORKERS,
      },
    );
    assert.equal(result.code, 1);
    assert.equal(
      result.stderr,
      `Cannot listen on 127.0.0.1:${port}: address already in use (try --port ${port + 1})\n`,
    );
  } finally {
    await new Promise((resolve) => listener.close(resolve));
  }
});

test("brick CLI exits 2 with the command to run when Deno lacks what --workers needs", {
  skip: deno ? false : "Deno only",
}, async () => {
  const args = ["--workers", "2", "--host", "127.0.0.1", "--port", "0"];
  const { code, stderr } = await runBrick(args);
  assert.equal(code, 2);
  assert.equal(
    stderr,
    "Cannot start 2 workers: Deno needs --unstable-net, as the workers share the port with " +
      "SO_REUSEPORT, and read access to main.ts, which each worker thread loads\n" +
      "Run it with them instead: " +
      `${denoRun()} --allow-net --allow-read --unstable-net main.ts ${args.join(" ")}\n`,
  );
});
