/**
 * The reply bytes that all queries of one process may hold at once
 * (REPLY_MEMORY_MAX_BYTES). MAX_REPLY_BYTES bounds each query alone, but
 * concurrent queries of large pages each build their reply in memory and keep
 * it until the client has read it. Measured with Node 20 on events of 16 KB
 * `meta`, ten queries of 64 MiB each at once raised a server's resident
 * memory to 2.2 GB, and sixty to 4.7 GB.
 *
 * Each query reserves the larger of its estimated reply and the rows it read
 * with `meta`, as `ReplyBudget` counts them, and gives its reservation back
 * when its HTTP response closes. A reservation that does not fit is refused,
 * and the query gets SERVICE_UNAVAILABLE with HTTP 503, so the client retries
 * later instead of the process running out of memory.
 * NOTE: the counts are estimates made while the reply is built, so the
 * process can hold more than the maximum for a moment: reads that run at
 * once each get the room that was free when they started.
 */
export class ReplyMemory {
  private reservedBytes = 0;

  constructor(readonly maxBytes: number) {}

  /** Bytes reserved by the queries that run or whose replies are being sent. */
  get reserved(): number {
    return this.reservedBytes;
  }

  /** Bytes that a reservation can still take. */
  get available(): number {
    return Math.max(0, this.maxBytes - this.reservedBytes);
  }

  /** Reserves `bytes` and returns true, or returns false and reserves nothing when they do not fit. */
  tryReserve(bytes: number): boolean {
    if (this.reservedBytes + bytes > this.maxBytes) {
      return false;
    }
    this.reservedBytes += bytes;
    return true;
  }

  /** Gives back bytes of an earlier reservation. */
  release(bytes: number): void {
    this.reservedBytes = Math.max(0, this.reservedBytes - bytes);
  }
}
