/**
 * The budget of reply bytes that the events, segments, and report intervals
 * and buckets of one query share over all its root fields (MAX_REPLY_BYTES).
 * Resolvers charge it before graphql-js adds their values to the reply, so
 * that aliases of full pages with large `meta` values cannot build a reply of
 * hundreds of megabytes.
 *
 * The same maximum bounds the rows that a query reads with `meta`: pages
 * whose nodes select it, and the events of segments that select it. Such
 * reads take turns, and the SQL of each returns rows only until they exceed
 * the bytes that the earlier reads left, so the server receives about
 * MAX_REPLY_BYTES of them per query before it rejects the query.
 * NOTE: the estimate drops the space after each `, ` and `": ` of the text
 * that PostgreSQL sends, inside strings too, so for `meta` made mostly of
 * such separators the server receives up to about twice MAX_REPLY_BYTES.
 *
 * NOTE: rows read without `meta` do not count. Their number is bounded by
 * REQUEST_MAX_ROOT_FIELDS pages of PAGE_SIZE_MAX rows and the two events of
 * each segment on them, not by MAX_REPLY_BYTES.
 */
import type { ApolloServerPlugin } from '@apollo/server';
import { OperationTypeNode, type GraphQLResolveInfo } from 'graphql';

import { badInput, DomainError } from '../domain/errors.js';
import type { ReadBudget } from '../services/queries.js';
import type { GraphQLContext } from './context.js';
import { domainErrorExtensions } from './errors.js';
import type { ReplyMemory } from './reply-memory.js';

/**
 * Bytes that each event and segment of a reply counts besides its `meta`.
 * It is an estimate. Measured on session events without client ids, an
 * event with every scalar field selected took about 300 bytes of JSON, a
 * segment about 220, and either with only `id` about 45.
 */
export const OBJECT_REPLY_BYTES = 256;

/**
 * Bytes that each interval or bucket of a report counts. It is an
 * estimate: `{"start":"2026-01-01T00:00:00.000Z","end":"2026-01-01T00:01:00.000Z","seconds":60}`
 * has 83 bytes, and longer `seconds` values add a few.
 */
export const INTERVAL_REPLY_BYTES = 96;

/** Sizes of `meta` objects already measured, because one event can appear many times in a reply. */
const metaSizes = new WeakMap<object, number>();

/** Returns the size of `meta` as UTF-8 JSON, as MAX_META_BYTES measures it at intake. */
function metaBytes(meta: Record<string, unknown>): number {
  let size = metaSizes.get(meta);
  if (size === undefined) {
    size = Buffer.byteLength(JSON.stringify(meta), 'utf8');
    metaSizes.set(meta, size);
  }
  return size;
}

/** Returns whether a field belongs to a query, the only operation type that the budget bounds. */
export function isQuery(info: GraphQLResolveInfo): boolean {
  // A mutation has done its work by the time its reply is built, so
  // rejecting that reply would hide work that happened.
  // NOTE: no setting bounds a mutation's reply as a whole. It grows with the
  // events sent (MAX_BATCH_SIZE, MAX_META_BYTES) and the segments they close.
  return info.operation.operation === OperationTypeNode.QUERY;
}

/**
 * Bytes charged by the events, segments and report intervals of one
 * request. Over the maximum, the charge that crossed it throws
 * LIMIT_EXCEEDED, and every later charge returns false, so that its resolver
 * returns an empty value in place of building more of a reply that
 * `createReplyBudgetPlugin` replaces.
 *
 * The rows that the request reads with `meta` are counted apart, each row
 * that a read returns once, because the reply counts an object once for
 * every place it appears. Their reads take turns, so that each read gets
 * the bytes that the earlier ones left.
 *
 * With a `ReplyMemory`, the larger of the two counts is also reserved in the
 * process's memory for replies, and a reservation that does not fit ends
 * the request like a charge over the maximum, with SERVICE_UNAVAILABLE.
 * `releaseMemory` gives the reservation back once the reply is sent.
 */
export class ReplyBudget implements ReadBudget {
  private spentBytes = 0;
  private readBytes = 0;
  /** Bytes reserved in `memory` for this request. */
  private heldBytes = 0;
  /** The read that runs or ran last, which the next read waits for. */
  private lastRead: Promise<unknown> = Promise.resolve();
  readonly objectBytes = OBJECT_REPLY_BYTES;
  /** The error of the charge or read that crossed the maximum, or null while both are within it. */
  exceeded: DomainError | null = null;

  constructor(
    readonly maxBytes: number,
    /** The reply memory of the process, or null without one and after `releaseMemory`. */
    private memory: ReplyMemory | null = null,
  ) {}

  read<T>(read: (remainingBytes: number) => Promise<{ value: T; bytes: number }>): Promise<T> {
    const turn = this.lastRead.then(() => this.readAlone(read));
    this.lastRead = turn.catch(() => undefined);
    return turn;
  }

  private async readAlone<T>(read: (remainingBytes: number) => Promise<{ value: T; bytes: number }>): Promise<T> {
    if (this.exceeded !== null) {
      throw this.exceeded;
    }
    const { value, bytes } = await read(Math.min(this.maxBytes - this.readBytes, this.roomForRead()));
    this.readBytes += bytes;
    if (this.readBytes > this.maxBytes) {
      this.exceeded ??= this.limitError(this.readBytes);
      throw this.exceeded;
    }
    this.hold(this.readBytes);
    return value;
  }

  /** Bytes that a read can add before it no longer fits into the reply memory. */
  private roomForRead(): number {
    if (this.memory === null) {
      return Number.POSITIVE_INFINITY;
    }
    return this.memory.available + Math.max(0, this.heldBytes - this.readBytes);
  }

  /** Reserves memory up to `bytes` for this request; throws SERVICE_UNAVAILABLE when it does not fit. */
  private hold(bytes: number): void {
    if (this.memory === null || bytes <= this.heldBytes) {
      return;
    }
    if (!this.memory.tryReserve(bytes - this.heldBytes)) {
      this.exceeded ??= this.memoryError(bytes, this.memory);
      throw this.exceeded;
    }
    this.heldBytes = bytes;
  }

  /**
   * Gives this request's reservation back to the reply memory and drops the
   * memory. The response has closed or its reply was replaced by an error,
   * so no later close would give a new reservation back, and resolvers that
   * still run, such as those of a query whose client has gone, reserve
   * nothing. Later calls do nothing.
   */
  releaseMemory(): void {
    this.memory?.release(this.heldBytes);
    this.memory = null;
    this.heldBytes = 0;
  }

  /** Charges `count` events or segments of a query reply, and returns false once the budget is exceeded. */
  chargeObjects(info: GraphQLResolveInfo, count: number): boolean {
    return isQuery(info) ? this.charge(count * OBJECT_REPLY_BYTES) : true;
  }

  /** Charges `count` intervals or buckets of a report, and returns false once the budget is exceeded. */
  chargeIntervals(info: GraphQLResolveInfo, count: number): boolean {
    return isQuery(info) ? this.charge(count * INTERVAL_REPLY_BYTES) : true;
  }

  /** Charges one `meta` value of a query reply, and returns false once the budget is exceeded. */
  chargeMeta(info: GraphQLResolveInfo, meta: Record<string, unknown> | null): boolean {
    if (!isQuery(info)) {
      return true;
    }
    if (this.exceeded !== null) {
      return false;
    }
    return meta === null ? true : this.charge(metaBytes(meta));
  }

  private charge(bytes: number): boolean {
    if (this.exceeded !== null) {
      return false;
    }
    this.spentBytes += bytes;
    if (this.spentBytes > this.maxBytes) {
      this.exceeded = this.limitError(this.spentBytes);
      throw this.exceeded;
    }
    this.hold(this.spentBytes);
    return true;
  }

  private memoryError(bytes: number, memory: ReplyMemory): DomainError {
    const others = memory.reserved - this.heldBytes;
    return new DomainError(
      'SERVICE_UNAVAILABLE',
      'REPLY_MEMORY_FULL',
      `The server is busy: the replies that other requests are building or sending hold an estimated ${others} bytes, and this reply's estimated ${bytes} bytes would bring the total above the maximum of ${memory.maxBytes} bytes (REPLY_MEMORY_MAX_BYTES). Retry in a few seconds, or request smaller pages with \`first\` or \`last\`.`,
      { limit: 'REPLY_MEMORY_MAX_BYTES', value: bytes, max: memory.maxBytes, retryAfterSeconds: 1 },
    );
  }

  private limitError(bytes: number): DomainError {
    return badInput(
      'LIMIT_EXCEEDED',
      `The reply to this request is estimated at ${bytes} bytes or more, above the maximum of ${this.maxBytes} bytes (MAX_REPLY_BYTES). Request smaller pages with \`first\` or \`last\`, select \`meta\` only where it is needed, ask for fewer report intervals or buckets, or send the root fields in separate requests.`,
      { limit: 'MAX_REPLY_BYTES', value: bytes, max: this.maxBytes },
    );
  }
}

/**
 * Replaces the reply of a query over MAX_REPLY_BYTES with that one error and
 * HTTP 400, or of a query refused by REPLY_MEMORY_MAX_BYTES with that error
 * and HTTP 503. The fields resolved after the budget ran out are empty, so
 * the client must not get any of the partial data.
 */
export function createReplyBudgetPlugin(): ApolloServerPlugin<GraphQLContext> {
  return {
    async requestDidStart() {
      return {
        async willSendResponse({ contextValue, response }) {
          const error = contextValue.replyBudget.exceeded;
          if (error === null || response.body.kind !== 'single') {
            return;
          }
          const limit = String(error.details.limit);
          const cause = error.kind === 'SERVICE_UNAVAILABLE' ? 'its reply and those in flight would exceed' : 'its reply would exceed';
          contextValue.logger.info({ limit, value: error.details.value, max: error.details.max }, `query rejected: ${cause} ${limit}`);
          response.body.singleResult = { errors: [{ message: error.message, extensions: domainErrorExtensions(error) }] };
          // The reply is now this one error, so the memory reserved for the
          // discarded one goes back at once.
          contextValue.replyBudget.releaseMemory();
          if (error.kind === 'SERVICE_UNAVAILABLE') {
            response.http.status = 503;
            response.http.headers.set('retry-after', '1');
          } else {
            response.http.status = 400;
          }
        },
      };
    },
  };
}
