// Tests for cli/errors.ts: a port in use, missing Deno permissions, and
// certificates that cannot be read or used, each with its exit code and hint.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { test } from "../_test_skips.ts";
import {
  curl,
  deno,
  denoRun,
  NO_CURL,
  NO_OPENSSL,
  READ,
  runBrick,
  spawnBrick,
  UNIX,
  withCertificates,
  withTempDir,
} from "./_test_cli.ts";

test("brick CLI exits 1 with 'address already in use' when the port is taken", async () => {
  const listener = net.createServer();
  await new Promise<void>((resolve, reject) => {
    listener.once("error", reject);
    listener.listen({ host: "127.0.0.1", port: 0 }, resolve);
  });
  const { port } = listener.address() as net.AddressInfo;
  try {
    const { code, stderr } = await runBrick(["--host", "127.0.0.1", "--port", String(port)]);
    assert.equal(code, 1);
    assert.equal(
      stderr,
      `Cannot listen on 127.0.0.1:${port}: address already in use (try --port ${port + 1})\n`,
    );
  } finally {
    await new Promise((resolve) => listener.close(resolve));
  }
});

test("brick CLI exits 1 with the command to run when --allow-net is missing", {
  skip: deno ? false : "Deno only: Node and Bun have no permissions",
}, async () => {
  const { code, stderr } = await runBrick(["--host", "127.0.0.1", "--port", "0"], {
    permissions: [],
  });
  assert.equal(code, 1);
  assert.equal(
    stderr,
    "Cannot listen on 127.0.0.1:0: network access is not allowed\n" +
      "Run it with network access instead: " +
      `${denoRun()} --allow-net main.ts --host 127.0.0.1 --port 0\n`,
  );
});

test("brick CLI exits 2 with the command to run when --allow-read is missing", {
  skip: deno ? false : "Deno only: Node and Bun have no permissions",
}, async () => {
  await withTempDir({ "app.mjs": "export default () => new Response();\n" }, async (dir) => {
    const app = join(dir, "app.mjs");
    const { code, stderr } = await runBrick([app, "--host", "127.0.0.1", "--port", "0"]);
    assert.equal(code, 2);
    assert.equal(
      stderr,
      `Cannot read "${app}": file access is not allowed\n` +
        "Run it with read access instead: " +
        `${denoRun()} --allow-net --allow-read main.ts ${app} --host 127.0.0.1 --port 0\n`,
    );
  });
});

test("brick CLI exits 2 naming the certificate or key that it cannot read or use", {
  skip: NO_OPENSSL,
}, async () => {
  await withCertificates(async (pki) => {
    await withTempDir({ "notes.txt": "not a certificate\n" }, async (dir) => {
      const missing = join(dir, "missing.pem");
      const notes = join(dir, "notes.txt");
      const cases: [string[], string][] = [
        [
          ["--cert", missing, "--key", pki.keyFile],
          `Cannot read the certificate "${missing}" (--cert): no such file (${missing})`,
        ],
        [
          ["--cert", pki.certFile, "--key", dir],
          `Cannot read the private key "${dir}" (--key): it is a folder`,
        ],
        [
          ["--cert", notes, "--key", pki.keyFile],
          `Cannot use "${notes}" as the certificate (--cert): it holds no PEM block ("-----BEGIN …")`,
        ],
      ];
      for (const [args, message] of cases) {
        const result = await runBrick([...args, "--host", "127.0.0.1", "--port", "0"], {
          permissions: READ,
        });
        assert.equal(result.code, 2, `for ${args}: ${result.stderr}`);
        assert.equal(result.stderr, `${message}\n`);
        assert.equal(result.stdout, "", "nothing listens");
      }
      // The CA's certificate with the server's key: a pair that does not belong together.
      const mismatched = await runBrick(
        ["--cert", pki.caFile, "--key", pki.keyFile, "--host", "127.0.0.1", "--port", "0"],
        { permissions: READ },
      );
      assert.equal(mismatched.code, 2, mismatched.stderr);
      assert.ok(
        mismatched.stderr.startsWith(
          `Cannot use --cert "${pki.caFile}" with --key "${pki.keyFile}": `,
        ),
        mismatched.stderr,
      );
      assert.match(mismatched.stderr, /check that both are PEM files and that the key belongs/);
    });
  });
});

test("brick CLI exits 2 with the command to run when --cert comes without --allow-read", {
  skip: deno ? (NO_OPENSSL || false) : "Deno only: Node and Bun have no permissions",
}, async () => {
  await withCertificates(async (pki) => {
    const args = ["--cert", pki.certFile, "--key", pki.keyFile, "--port", "0"];
    const { code, stderr } = await runBrick(args);
    assert.equal(code, 2);
    assert.equal(
      stderr,
      `Cannot read "${pki.certFile}": file access is not allowed\n` +
        `Run it with read access instead: ${denoRun()} --allow-net --allow-read main.ts ${
          args.join(" ")
        }\n`,
    );
  });
});

test("brick CLI exits 1 when another server listens on the --unix socket, which keeps serving", {
  skip: NO_CURL,
}, async () => {
  await withTempDir({}, async (dir) => {
    const socket = join(dir, "brick.sock");
    const first = spawnBrick(["--unix", socket, "--quiet"], { permissions: UNIX });
    try {
      await first.stdout.waitFor(/Socket:/);
      const second = await runBrick(["--unix", socket], { permissions: UNIX });
      assert.equal(second.code, 1);
      assert.equal(
        second.stderr,
        `Cannot listen on ${socket}: address already in use ` +
          "(a running server listens there; stop it or choose another --unix path)\n",
      );
      const result = await curl(["--unix-socket", socket, "http://localhost/"]);
      assert.equal(result.stdout, "Hello, World!", "the first server still answers");
    } finally {
      await first.close();
    }
  });
});

test("brick CLI exits 1 with the command to run when --unix lacks Deno's permissions", {
  skip: deno ? false : "Deno only: Node and Bun have no permissions",
}, async () => {
  await withTempDir({}, async (dir) => {
    const socket = join(dir, "brick.sock");
    const { code, stderr } = await runBrick(["--unix", socket], { permissions: READ });
    assert.equal(code, 1);
    assert.equal(
      stderr,
      `Cannot listen on ${socket}: a Unix socket needs network, read and write access\n` +
        `Run it with them instead: ${denoRun()} --allow-net --allow-read --allow-write main.ts ` +
        `--unix ${socket}\n`,
    );
    assert.equal(existsSync(socket), false);
  });
});
