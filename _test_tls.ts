// Test certificates for HTTPS tests, made with openssl when the tests run:
// a root CA and a server certificate it signs for localhost and 127.0.0.1.
// A server certificate that is its own CA does not do: rustls (Deno) refuses
// a CA certificate as a server's. Clients trust the root with
// `curl --cacert`, `tls.connect({ ca })` or NODE_EXTRA_CA_CERTS.

import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

/** The files {@linkcode makeTestCertificates} writes, and their PEM text. */
export interface TestCertificates {
  /** The root CA's certificate file, for clients to trust. */
  caFile: string;
  /** The server's certificate file, for `--cert`. */
  certFile: string;
  /** The server's private key file, for `--key`. */
  keyFile: string;
  /** The root CA's certificate, PEM text. */
  ca: string;
  /** The server's certificate, PEM text. */
  cert: string;
  /** The server's private key, PEM text. */
  key: string;
}

/** Why the TLS tests cannot run here, or false when openssl is installed. */
export function opensslMissing(): Promise<string | false> {
  return new Promise((resolve) => {
    execFile("openssl", ["version"], { timeout: 10_000 }, (error) => {
      resolve(error ? "openssl is not installed" : false);
    });
  });
}

/** Runs openssl with `args`, rejecting with its stderr when it fails. */
function openssl(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile("openssl", args, { timeout: 20_000 }, (error, _stdout, stderr) => {
      if (error) reject(new Error(`openssl ${args[0]} failed: ${stderr || error.message}`));
      else resolve();
    });
  });
}

/** Arguments that make a new P-256 key without a passphrase, valid for a day. */
const NEW_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"];

/**
 * Writes a root CA and a server certificate for `localhost` and `127.0.0.1`
 * signed by it into `dir` (which the caller creates and removes).
 *
 * @param dir An empty folder for the files.
 * @returns The file paths and their text.
 */
export async function makeTestCertificates(dir: string): Promise<TestCertificates> {
  const caFile = join(dir, "ca.pem");
  const caKeyFile = join(dir, "ca-key.pem");
  const certFile = join(dir, "cert.pem");
  const keyFile = join(dir, "key.pem");
  await openssl([
    "req",
    "-x509",
    ...NEW_KEY,
    "-subj",
    "/CN=brick test root",
    "-keyout",
    caKeyFile,
    "-out",
    caFile,
  ]);
  // `req -x509 -CA` (OpenSSL 3) signs the new certificate with the root at once.
  await openssl([
    "req",
    "-x509",
    ...NEW_KEY,
    "-subj",
    "/CN=localhost",
    "-CA",
    caFile,
    "-CAkey",
    caKeyFile,
    "-addext",
    "subjectAltName=DNS:localhost,IP:127.0.0.1",
    "-addext",
    "basicConstraints=critical,CA:FALSE",
    "-addext",
    "extendedKeyUsage=serverAuth",
    "-keyout",
    keyFile,
    "-out",
    certFile,
  ]);
  const read = (file: string) => readFileSync(file, "utf8");
  return { caFile, certFile, keyFile, ca: read(caFile), cert: read(certFile), key: read(keyFile) };
}
