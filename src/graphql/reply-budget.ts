/**
 * The budget of reply bytes that the events and segments of one query share
 * over all its root fields (MAX_REPLY_BYTES). Resolvers charge it before
 * graphql-js adds their values to the reply, so that aliases of full pages
 * with large `meta` values cannot build a reply of hundreds of megabytes.
 *
 * NOTE: the budget bounds the reply, not the rows read. The root fields
 * read their whole pages before any node charges it, with `meta` when the
 * query selects it anywhere below the page.
 */
import type { ApolloServerPlugin } from '@apollo/server';
import { OperationTypeNode, type GraphQLResolveInfo } from 'graphql';

import { badInput, type DomainError } from '../domain/errors.js';
import type { GraphQLContext } from './context.js';
import { domainErrorExtensions } from './errors.js';

/**
 * Bytes that each event and segment of a reply counts besides its `meta`.
 * It is an estimate. Measured on session events without client ids, an
 * event with every scalar field selected took about 300 bytes of JSON, a
 * segment about 220, and either with only `id` about 45.
 */
export const OBJECT_REPLY_BYTES = 256;

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
function isQuery(info: GraphQLResolveInfo): boolean {
  // A mutation has done its work by the time its reply is built, so
  // rejecting that reply would hide work that happened.
  // NOTE: no setting bounds a mutation's reply as a whole. It grows with the
  // events sent (MAX_BATCH_SIZE, MAX_META_BYTES) and the segments they close.
  return info.operation.operation === OperationTypeNode.QUERY;
}

/**
 * Bytes charged by the events and segments of one request. Over the maximum,
 * the charge that crossed it throws LIMIT_EXCEEDED, and every later charge
 * returns false, so that its resolver returns an empty value in place of
 * building more of a reply that `createReplyBudgetPlugin` replaces.
 */
export class ReplyBudget {
  private spentBytes = 0;
  /** The error of the charge that crossed the maximum, or null while the reply is within it. */
  exceeded: DomainError | null = null;

  constructor(readonly maxBytes: number) {}

  /** Charges `count` events or segments of a query reply, and returns false once the budget is exceeded. */
  chargeObjects(info: GraphQLResolveInfo, count: number): boolean {
    return isQuery(info) ? this.charge(count * OBJECT_REPLY_BYTES) : true;
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
      this.exceeded = badInput(
        'LIMIT_EXCEEDED',
        `The reply to this request is estimated at ${this.spentBytes} bytes or more, above the maximum of ${this.maxBytes} bytes (MAX_REPLY_BYTES). Request smaller pages with \`first\` or \`last\`, select \`meta\` only where it is needed, or send the root fields in separate requests.`,
        { limit: 'MAX_REPLY_BYTES', value: this.spentBytes, max: this.maxBytes },
      );
      throw this.exceeded;
    }
    return true;
  }
}

/**
 * Replaces the reply of a query over MAX_REPLY_BYTES with that one error and
 * HTTP 400. The fields resolved after the budget ran out are empty, so the
 * client must not get any of the partial data.
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
          contextValue.logger.info(
            { limit: 'MAX_REPLY_BYTES', value: error.details.value, max: error.details.max },
            'query rejected: its reply would exceed MAX_REPLY_BYTES',
          );
          response.body.singleResult = { errors: [{ message: error.message, extensions: domainErrorExtensions(error) }] };
          response.http.status = 400;
        },
      };
    },
  };
}
