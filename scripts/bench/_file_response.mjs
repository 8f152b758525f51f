/**
 * The static-file handler brick's bench servers fall back to while brick has no `serveDir`
 * (`file_server.ts`): it opens the file and answers with a pull stream of 64 KiB reads and a
 * Content-Length, the same work `node:http` does with `fs.createReadStream().pipe(res)`.
 *
 * @module
 */

import { open } from "node:fs/promises";

/** Bytes read per pull: `fs.createReadStream`'s default highWaterMark. */
const CHUNK_BYTES = 64 * 1024;

/**
 * A 200 response streaming the file at `path`, or a 404 if it cannot be opened.
 *
 * @param {string} path the file to send
 * @returns {Promise<Response>}
 */
export async function fileResponse(path) {
  let file;
  try {
    file = await open(path, "r");
  } catch {
    return new Response("Not Found", { status: 404 });
  }
  const { size } = await file.stat();
  let position = 0;
  const body = new ReadableStream({
    async pull(controller) {
      try {
        const buffer = new Uint8Array(CHUNK_BYTES);
        const { bytesRead } = await file.read(buffer, 0, CHUNK_BYTES, position);
        if (bytesRead === 0) {
          await file.close();
          controller.close();
          return;
        }
        position += bytesRead;
        controller.enqueue(buffer.subarray(0, bytesRead));
      } catch (error) {
        await file.close().catch(() => {});
        controller.error(error);
      }
    },
    async cancel() {
      await file.close();
    },
  });
  return new Response(body, {
    headers: { "content-type": "application/octet-stream", "content-length": String(size) },
  });
}
