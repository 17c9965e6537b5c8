/**
 * Client-side shapes of the GraphQL inputs the importer sends, written against
 * `schema.graphql`. The importer talks to the server over HTTP only, so it does
 * not import the server's generated types.
 */

export type AutoCloseEndAt = 'LAST_ACTIVITY' | 'DEADLINE';

export interface AutoClosePolicyInput {
  timeoutSeconds: number;
  endAt: AutoCloseEndAt;
}

export interface DefinePairTypeInput {
  name: string;
  startType: string;
  endType: string;
  parent?: string | null;
  autoClose?: AutoClosePolicyInput | null;
}

export type JsonObject = { [key: string]: unknown };

export interface EventInput {
  /** Idempotency key, unique per user. */
  id?: string | null;
  type: string;
  isPair?: boolean | null;
  pairType?: string | null;
  pairKey?: string | null;
  /** RFC 3339 instant with an explicit offset. */
  occurredAt?: string | null;
  meta?: JsonObject | null;
  /** Send on behalf of this user (admins only). */
  userId?: string | null;
}

/** Location of an input record: the file as given and its 1-based line number. */
export interface SourceRef {
  file: string;
  line: number;
}

/** One NDJSON record of an import file, after its shape was checked. */
export type ImportRecord =
  | { kind: 'pairType'; input: DefinePairTypeInput }
  | { kind: 'event'; username: string | null; input: EventInput };
