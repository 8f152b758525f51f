// The read side of a socket that pushes what it receives (node:net, Bun's
// sockets) as the pull-style read(buffer) brick's engine and its upstream
// client both use. One implementation for both, so that pausing (backpressure)
// and the end-of-stream rules cannot drift apart. Internal: not exported from
// deno.json.

/** Received bytes beyond this are left in the kernel (the socket pauses) until read. */
const PAUSE_BYTES = 65_536;

/**
 * The read side of a socket that pushes what it receives (node:net, Bun):
 * chunks that arrive are queued and copied out by `read()`, or copied
 * straight into the buffer of a read that is waiting. The socket pauses while
 * the queue holds {@linkcode PAUSE_BYTES}, so a handler that does not read
 * the body holds the client back.
 */
export abstract class PushedConn {
  #chunks: Uint8Array[] = [];
  #queued = 0;
  #paused = false;
  #ended = false;
  #failure: Error | null = null;
  #reader: {
    buffer: Uint8Array;
    resolve(n: number | null): void;
    reject(error: Error): void;
  } | null = null;

  /** Stops the socket delivering data; the kernel then holds the client back. */
  protected abstract pauseReading(): void;
  protected abstract resumeReading(): void;

  /** The error that ended the connection, if one did. */
  protected get failure(): Error | null {
    return this.#failure;
  }

  protected received(chunk: Uint8Array): void {
    const reader = this.#reader;
    if (reader !== null && this.#queued === 0) {
      // The common case: a read waits, and the bytes go straight into its buffer.
      this.#reader = null;
      const n = Math.min(chunk.length, reader.buffer.length);
      reader.buffer.set(n === chunk.length ? chunk : chunk.subarray(0, n));
      if (n < chunk.length) this.#queue(chunk.subarray(n));
      reader.resolve(n);
      return;
    }
    this.#queue(chunk);
    this.#settleReader();
  }

  #queue(chunk: Uint8Array): void {
    this.#chunks.push(chunk);
    this.#queued += chunk.length;
    if (this.#queued >= PAUSE_BYTES && !this.#paused) {
      this.#paused = true;
      this.pauseReading();
    }
  }

  /** The peer sent FIN: reads drain the queue, then see the end. */
  protected peerEnded(): void {
    this.#ended = true;
    this.#settleReader();
  }

  /** The socket failed: a waiting read fails once the queue is drained. */
  protected failed(error: Error): void {
    this.#failure ??= error;
    this.#settleReader();
  }

  /** The socket closed: after the peer's FIN that is the end, else a failure. */
  protected socketClosed(): void {
    if (!this.#ended) this.#failure ??= new Error("The socket closed");
    this.#settleReader();
  }

  #settleReader(): void {
    const reader = this.#reader;
    if (reader === null) return;
    if (this.#queued > 0) {
      this.#reader = null;
      reader.resolve(this.#take(reader.buffer));
    } else if (this.#failure) {
      this.#reader = null;
      reader.reject(this.#failure);
    } else if (this.#ended) {
      this.#reader = null;
      reader.resolve(null);
    }
  }

  /** Copies queued bytes into `buffer`. */
  #take(buffer: Uint8Array): number {
    let n = 0;
    while (n < buffer.length && this.#chunks.length > 0) {
      const chunk = this.#chunks[0];
      const count = Math.min(chunk.length, buffer.length - n);
      buffer.set(count === chunk.length ? chunk : chunk.subarray(0, count), n);
      n += count;
      if (count === chunk.length) this.#chunks.shift();
      else this.#chunks[0] = chunk.subarray(count);
    }
    this.#queued -= n;
    if (this.#paused && this.#queued < PAUSE_BYTES) {
      this.#paused = false;
      this.resumeReading();
    }
    return n;
  }

  read(buffer: Uint8Array): Promise<number | null> {
    if (this.#queued > 0) return Promise.resolve(this.#take(buffer));
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#ended) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      this.#reader = { buffer, resolve, reject };
    });
  }
}
