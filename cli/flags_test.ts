// Tests for cli/flags.ts: parsing and validating the flags, --help, --version,
// and the usage line under a bad flag.

import assert from "node:assert/strict";
import { availableParallelism } from "node:os";
import { test } from "node:test";
import { parseFlags, UsageError } from "./flags.ts";
import {
  COMMAND,
  DEFAULT_FLAGS,
  escapeRegExp,
  READ,
  runBrick,
  USAGE,
  VERSION,
} from "./_test_cli.ts";

test("parseFlags() reads long and short flags and applies the defaults", () => {
  assert.deepEqual(parseFlags([]), DEFAULT_FLAGS);
  assert.deepEqual(parseFlags(["-p", "0", "-H", "127.0.0.1", "-vq"]), {
    ...DEFAULT_FLAGS,
    port: 0,
    host: "127.0.0.1",
    verbose: true,
    quiet: true,
  });
  assert.equal(parseFlags(["--port=65535"]).port, 65535);
  assert.equal(parseFlags(["-p8080"]).port, 8080);
});

test("parseFlags() rejects bad ports, unknown flags and stray arguments", () => {
  const cases: [string[], string][] = [
    [["--port", "abc"], 'Invalid port "abc": expected a number from 0 to 65535'],
    [["--port", "-1"], 'Invalid port "-1": expected a number from 0 to 65535'],
    [["--port", "65536"], 'Invalid port "65536": expected a number from 0 to 65535'],
    [["--port", "80.5"], 'Invalid port "80.5": expected a number from 0 to 65535'],
    [["--port="], 'Invalid port "": expected a number from 0 to 65535'],
    [["--port"], 'Missing value for "--port"'],
    [["--port", "--quiet"], 'Missing value for "--port"'],
    [["--nope"], 'Unknown flag "--nope"'],
    [["-x"], 'Unknown flag "-x"'],
    [["--quiet=yes"], 'Flag "--quiet" takes no value'],
    [
      ["app.ts", "public"],
      'Unexpected argument "public": brick serves one app module or one folder',
    ],
  ];
  for (const [args, message] of cases) {
    assert.throws(() => parseFlags(args), (error) => {
      assert.ok(error instanceof UsageError);
      assert.equal(error.message, message, `for ${JSON.stringify(args)}`);
      return true;
    });
  }
});

test("brick CLI prints 'brick <version>' for --version and -V", async () => {
  for (const flag of ["--version", "-V"]) {
    const { code, stdout } = await runBrick([flag]);
    assert.equal(code, 0);
    assert.equal(stdout, `brick ${VERSION}\n`);
  }
});

test("brick CLI prints the usage line and aligned options for --help", async () => {
  const { code, stdout: text } = await runBrick(["-h"]);
  assert.equal(code, 0);
  assert.match(text, new RegExp(`^Usage: ${escapeRegExp(COMMAND)} \\[`, "m"));
  const options = text.split("\n").filter((line) => /^ {2}(?:-\w, | {4})--/.test(line));
  assert.deepEqual(
    options.map((line) => line.match(/--([\w-]+)/)![1]),
    [
      ...["port", "host", "cert", "key", "unix", "workers", "app", "root", "dotfiles"],
      ...["no-listing", "no-compress", "cors", "header", "proxy", "cache", "verbose", "quiet"],
      ...["help", "version"],
    ],
  );
  const columns = options.map((line) => line.search(/(?<=\S {2,})\S/));
  assert.equal(new Set(columns).size, 1, `descriptions start in one column:\n${text}`);
  assert.match(text, /^Examples:$/m);
  assert.ok(text.includes(`  ${COMMAND} ./public -p 8080 -H 127.0.0.1 --cors\n`), text);
  assert.doesNotMatch(text, /debug-worker/, "the debugging flag stays out of the help");
  const wide = text.split("\n").filter((line) => line.length > 100);
  assert.deepEqual(wide, [], "every line fits 100 columns");
});

test("brick CLI exits 2 with the usage line on an unknown flag", async () => {
  const { code, stderr } = await runBrick(["--nope"]);
  assert.equal(code, 2);
  const [error, usage] = stderr.split("\n");
  assert.equal(error, 'Unknown flag "--nope"');
  assert.equal(usage, USAGE);
});

test("brick CLI exits 2 with the usage line on a bad port", async () => {
  for (const port of ["abc", "-1", "65536"]) {
    const { code, stderr } = await runBrick(["--port", port]);
    assert.equal(code, 2, `for --port ${port}`);
    const [error, usage] = stderr.split("\n");
    assert.equal(error, `Invalid port "${port}": expected a number from 0 to 65535`);
    assert.match(usage, /^Usage: /);
  }
});

test("parseFlags() reads the path, --app, --root and the response flags", () => {
  const args = ["public", "--cors", "--dotfiles", "--no-listing", "--no-compress"];
  const headers = ["--header", "Cache-Control: no-store", "--header=X-Empty:"];
  assert.deepEqual(parseFlags([...args, ...headers, "--header", "X-Padded:\t a  b \t"]), {
    ...DEFAULT_FLAGS,
    path: "public",
    cors: true,
    dotfiles: true,
    listing: false,
    compress: false,
    headers: [["Cache-Control", "no-store"], ["X-Empty", ""], ["X-Padded", "a  b"]],
  });
  assert.equal(parseFlags(["--app", "app.ts"]).app, "app.ts");
  assert.equal(parseFlags(["--root=site"]).root, "site");
  assert.equal(parseFlags(["--", "-odd.mjs"]).path, "-odd.mjs");
});

test("parseFlags() rejects a malformed --header, naming it", () => {
  const badName = "the name must be letters, digits and !#$%&'*+-.^_`|~, with no spaces";
  const cases: [string, string][] = [
    ["Cache-Control no-store", 'Invalid header "Cache-Control no-store": expected "Name: value"'],
    ["Bad Name: x", `Invalid header "Bad Name: x": ${badName}`],
    [": x", `Invalid header ": x": ${badName}`],
    [
      "X-Bell: a\x07b",
      'Invalid header "X-Bell: a\\u0007b": the value must not contain control characters',
    ],
  ];
  for (const [value, message] of cases) {
    assert.throws(() => parseFlags(["--header", value]), (error) => {
      assert.ok(error instanceof UsageError);
      assert.equal(error.message, message);
      return true;
    });
  }
});

test("parseFlags() rejects two things to serve at once, such as --app with --root", () => {
  const one = "brick serves one app module or one folder";
  const cases: [string[], string][] = [
    [
      ["--app", "app.ts", "--root", "public"],
      `Cannot serve --app "app.ts" and --root "public" at once: ${one}`,
    ],
    [["site", "--app", "app.ts"], `Cannot serve "site" and --app "app.ts" at once: ${one}`],
    [["--root", "a", "b"], `Cannot serve "b" and --root "a" at once: ${one}`],
    [["--root", ""], 'Missing value for "--root"'],
    [["--app"], 'Missing value for "--app"'],
  ];
  for (const [args, message] of cases) {
    assert.throws(() => parseFlags(args), (error) => {
      assert.ok(error instanceof UsageError);
      assert.equal(error.message, message, `for ${JSON.stringify(args)}`);
      return true;
    });
  }
});

test("brick CLI exits 2 with the usage line on a malformed --header or --app with --root", async () => {
  const cases: [string[], string][] = [
    [["--header", "X-Trace"], 'Invalid header "X-Trace": expected "Name: value"'],
    [
      ["--app", "app.mjs", "--root", "public"],
      'Cannot serve --app "app.mjs" and --root "public" at once: ' +
      "brick serves one app module or one folder",
    ],
  ];
  for (const [args, message] of cases) {
    const { code, stderr } = await runBrick(args, { permissions: READ });
    assert.equal(code, 2, `for ${args}`);
    assert.equal(stderr, `${message}\n${USAGE}\n`);
  }
});

test("parseFlags() reads --cert, --key, --unix and --workers", () => {
  assert.deepEqual(parseFlags(["--cert", "c.pem", "--key=k.pem", "--workers", "3"]), {
    ...DEFAULT_FLAGS,
    cert: "c.pem",
    key: "k.pem",
    workers: 3,
  });
  assert.deepEqual(parseFlags(["--unix", "/run/brick.sock", "--workers", "1"]), {
    ...DEFAULT_FLAGS,
    unix: "/run/brick.sock",
  });
  assert.equal(parseFlags(["--workers", "auto"]).workers, availableParallelism());
  assert.equal(parseFlags(["--workers=256"]).workers, 256);
  assert.equal(parseFlags(["--debug-worker"]).debugWorker, true);
});

test("parseFlags() rejects a lone --cert or --key, --unix with TCP flags, and bad --workers", () => {
  const unix = 'Flag "--unix" cannot be combined with';
  const count = 'expected a number from 1 to 256, or "auto"';
  const cases: [string[], string][] = [
    [
      ["--cert", "c.pem"],
      'Flag "--cert" needs "--key" too: HTTPS takes a certificate and its private key',
    ],
    [
      ["--key", "k.pem"],
      'Flag "--key" needs "--cert" too: HTTPS takes a certificate and its private key',
    ],
    [["--cert="], 'Missing value for "--cert"'],
    [["--unix"], 'Missing value for "--unix"'],
    [
      ["--unix", "a.sock", "--port", "80"],
      `${unix} "--port": brick listens on a Unix socket or on a TCP port, not both`,
    ],
    [
      ["--host", "::1", "--unix", "a.sock"],
      `${unix} "--host": brick listens on a Unix socket or on a TCP port, not both`,
    ],
    [
      ["--unix", "a.sock", "--cert", "c.pem", "--key", "k.pem"],
      `${unix} "--cert": brick serves HTTPS on TCP ports only`,
    ],
    [["--unix", "a.sock", "--workers", "2"], `${unix} "--workers": workers share a TCP port`],
    [["--workers", "0"], `Invalid worker count "0": ${count}`],
    [["--workers", "-1"], `Invalid worker count "-1": ${count}`],
    [["--workers", "x"], `Invalid worker count "x": ${count}`],
    [["--workers", "1.5"], `Invalid worker count "1.5": ${count}`],
    [["--workers", "257"], `Invalid worker count "257": ${count}`],
    [["--workers", "--quiet"], 'Missing value for "--workers"'],
  ];
  for (const [args, message] of cases) {
    assert.throws(() => parseFlags(args), (error) => {
      assert.ok(error instanceof UsageError);
      assert.equal(error.message, message, `for ${JSON.stringify(args)}`);
      return true;
    });
  }
});

test("brick CLI exits 2 with the usage line for --cert without --key and --unix with --port", async () => {
  const cases: [string[], string][] = [
    [
      ["--cert", "cert.pem"],
      'Flag "--cert" needs "--key" too: HTTPS takes a certificate and its private key',
    ],
    [
      ["--unix", "brick.sock", "-p", "8080"],
      'Flag "--unix" cannot be combined with "--port": ' +
      "brick listens on a Unix socket or on a TCP port, not both",
    ],
  ];
  for (const [args, message] of cases) {
    const { code, stderr } = await runBrick(args, { permissions: READ });
    assert.equal(code, 2, `for ${args}`);
    assert.equal(stderr, `${message}\n${USAGE}\n`);
  }
});

test("brick CLI exits 2 with the usage line on a bad --workers value", async () => {
  for (const value of ["0", "-1", "x"]) {
    const { code, stderr } = await runBrick(["--workers", value]);
    assert.equal(code, 2, `for --workers ${value}`);
    assert.equal(
      stderr,
      `Invalid worker count "${value}": expected a number from 1 to 256, or "auto"\n${USAGE}\n`,
    );
  }
});
