/**
 * A minimal SQL interface over the two backends, PostgreSQL through `pg` and
 * embedded PGlite, for the queries where Prisma's row mapping costs too much
 * (bulk intake writes, report leaves) or where the SQL needs row comparisons
 * and locks. Prisma shares the same pool or PGlite instance.
 */
import { createHash } from 'node:crypto';

import type { PGlite, Transaction as PGliteTransaction } from '@electric-sql/pglite';
import type pg from 'pg';

export interface QueryOptions {
  /**
   * Keeps the statement prepared on each connection, so PostgreSQL parses it
   * once and, after a few runs, may plan it once for all parameter values.
   * Only for statements whose best plan does not depend on the values: an
   * array parameter of 1 or 1000 ids can need different plans.
   */
  prepare?: boolean;
}

/** The options of a statement to keep prepared. */
export const PREPARED: QueryOptions = { prepare: true };

export interface SqlClient {
  /** Runs one parameterised statement and returns its rows as objects. */
  query<T = Record<string, unknown>>(text: string, params?: unknown[], options?: QueryOptions): Promise<T[]>;
  /** Runs one parameterised statement and returns its rows as arrays (cheaper for large results). */
  queryArrays(text: string, params?: unknown[], options?: QueryOptions): Promise<unknown[][]>;
  /** Runs a script of several statements without parameters. */
  exec(script: string): Promise<void>;
  /** Runs `work` in one transaction; it commits when `work` resolves and rolls back when it throws. */
  transaction<T>(work: (tx: SqlClient) => Promise<T>): Promise<T>;
}

/**
 * The client of a whole database: a `pg` pool, or a PGlite instance, which
 * has a single connection.
 */
export interface SqlPool extends SqlClient {
  /**
   * Runs `work` on one connection outside a transaction, for statements that
   * cannot run in a transaction block and for session state such as
   * session-level advisory locks and settings. `work` may open transactions
   * on it. On PostgreSQL the connection is closed, not returned to the pool,
   * when `work` throws, so that a lock or setting it left behind goes with
   * it. PGlite's one connection stays open, so `work` must undo its session
   * state itself, and other callers' statements may run between its own.
   */
  session<T>(work: (session: SqlClient) => Promise<T>): Promise<T>;
}

/** The parameters of a statement built from parts: `bind` stores a value and returns its placeholder. */
export class SqlParams {
  readonly values: unknown[] = [];

  bind(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }
}

/**
 * Names of prepared statements, one per statement text. A statement built
 * from parts has one text per combination of parts, so the names stay few.
 * Past the limit, new texts run unnamed rather than fill each connection.
 */
export class StatementNames {
  private readonly names = new Map<string, string>();

  constructor(private readonly limit = 256) {}

  nameOf(text: string): string | undefined {
    let name = this.names.get(text);
    if (name === undefined && this.names.size < this.limit) {
      name = `em_${createHash('sha1').update(text).digest('hex').slice(0, 24)}`;
      this.names.set(text, name);
    }
    return name;
  }
}

/** The target of a `PgClient`'s statements: any pooled connection, or one held for a session or a transaction. */
type PgScope = 'pool' | 'session' | 'transaction';

class PgClient implements SqlPool {
  constructor(
    private readonly target: pg.Pool | pg.PoolClient,
    /** Null when statements must not be prepared, as behind a pooler that moves sessions between connections. */
    private readonly statements: StatementNames | null,
    private readonly scope: PgScope,
    /** For a session: closes its connection instead of returning it to the pool. */
    private readonly discardSession: () => void = () => {},
  ) {}

  private config(text: string, params: unknown[], options: QueryOptions | undefined): pg.QueryConfig {
    const name = options?.prepare === true ? this.statements?.nameOf(text) : undefined;
    return name === undefined ? { text, values: params } : { name, text, values: params };
  }

  async query<T>(text: string, params: unknown[] = [], options?: QueryOptions): Promise<T[]> {
    const result = await this.target.query(this.config(text, params, options));
    return result.rows as T[];
  }

  async queryArrays(text: string, params: unknown[] = [], options?: QueryOptions): Promise<unknown[][]> {
    const result = await this.target.query({ ...this.config(text, params, options), rowMode: 'array' });
    return result.rows as unknown[][];
  }

  async exec(script: string): Promise<void> {
    await this.target.query(script);
  }

  async transaction<T>(work: (tx: SqlClient) => Promise<T>): Promise<T> {
    if (this.scope === 'transaction') {
      throw new TypeError('Nested transactions are not supported.');
    }
    if (this.scope === 'session') {
      return this.runTransaction(this.target as pg.PoolClient, this.discardSession, work);
    }
    return this.withConnection(async (client, discard) => this.runTransaction(client, discard, work));
  }

  async session<T>(work: (session: SqlClient) => Promise<T>): Promise<T> {
    if (this.scope !== 'pool') {
      throw new TypeError('A session cannot start inside a session or a transaction.');
    }
    return this.withConnection(async (client, discard) => {
      try {
        return await work(new PgClient(client, this.statements, 'session', discard));
      } catch (error) {
        discard();
        throw error;
      }
    });
  }

  private async runTransaction<T>(
    client: pg.PoolClient,
    discard: () => void,
    work: (tx: SqlClient) => Promise<T>,
  ): Promise<T> {
    try {
      await client.query('BEGIN');
      const result = await work(new PgClient(client, this.statements, 'transaction'));
      await client.query('COMMIT');
      return result;
    } catch (error) {
      try {
        await client.query('ROLLBACK');
      } catch {
        // The connection itself failed, so it must not go back to the pool.
        discard();
      }
      throw error;
    }
  }

  /**
   * Runs `work` on a connection of the pool. `work` calls `discard` to close
   * the connection instead of returning it to the pool.
   */
  private async withConnection<T>(work: (client: pg.PoolClient, discard: () => void) => Promise<T>): Promise<T> {
    const client = await (this.target as pg.Pool).connect();
    let broken = false;
    // A connection that fails while the caller's code runs between
    // statements emits 'error' on the client. The pool does not listen to a
    // checked-out client, and an unheard 'error' would end the process. With
    // this listener, the next statement fails and the client is discarded.
    const onError = (): void => {
      broken = true;
    };
    client.on('error', onError);
    try {
      return await work(client, onError);
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  }
}

class PGliteClient implements SqlPool {
  constructor(private readonly target: PGlite | PGliteTransaction) {}

  async query<T>(text: string, params: unknown[] = []): Promise<T[]> {
    const result = await this.target.query<T>(text, params);
    return result.rows;
  }

  async queryArrays(text: string, params: unknown[] = []): Promise<unknown[][]> {
    const result = await this.target.query<unknown[]>(text, params, { rowMode: 'array' });
    return result.rows;
  }

  async exec(script: string): Promise<void> {
    await this.target.exec(script);
  }

  async transaction<T>(work: (tx: SqlClient) => Promise<T>): Promise<T> {
    if (!('transaction' in this.target)) {
      throw new TypeError('Nested transactions are not supported.');
    }
    return this.target.transaction((tx) => work(new PGliteClient(tx)));
  }

  async session<T>(work: (session: SqlClient) => Promise<T>): Promise<T> {
    if (!('transaction' in this.target)) {
      throw new TypeError('A session cannot start inside a transaction.');
    }
    return work(this);
  }
}

export function sqlClientForPool(pool: pg.Pool, statements: StatementNames | null): SqlPool {
  return new PgClient(pool, statements, 'pool');
}

export function sqlClientForPGlite(db: PGlite): SqlPool {
  return new PGliteClient(db);
}
