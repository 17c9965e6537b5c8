/**
 * A minimal SQL interface over the two backends, PostgreSQL through `pg` and
 * embedded PGlite, for the queries where Prisma's row mapping costs too much
 * (bulk intake writes, report leaves) or where the SQL needs row comparisons
 * and locks. Prisma shares the same pool or PGlite instance.
 */
import type { PGlite, Transaction as PGliteTransaction } from '@electric-sql/pglite';
import type pg from 'pg';

export interface SqlClient {
  /** Runs one parameterised statement and returns its rows as objects. */
  query<T = Record<string, unknown>>(text: string, params?: unknown[]): Promise<T[]>;
  /** Runs one parameterised statement and returns its rows as arrays (cheaper for large results). */
  queryArrays(text: string, params?: unknown[]): Promise<unknown[][]>;
  /** Runs a script of several statements without parameters. */
  exec(script: string): Promise<void>;
  /** Runs `work` in one transaction; it commits when `work` resolves and rolls back when it throws. */
  transaction<T>(work: (tx: SqlClient) => Promise<T>): Promise<T>;
}

/** The parameters of a statement built from parts: `bind` stores a value and returns its placeholder. */
export class SqlParams {
  readonly values: unknown[] = [];

  bind(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }
}

class PgClient implements SqlClient {
  constructor(private readonly target: pg.Pool | pg.PoolClient) {}

  async query<T>(text: string, params: unknown[] = []): Promise<T[]> {
    const result = await this.target.query(text, params);
    return result.rows as T[];
  }

  async queryArrays(text: string, params: unknown[] = []): Promise<unknown[][]> {
    const result = await this.target.query({ text, values: params, rowMode: 'array' });
    return result.rows as unknown[][];
  }

  async exec(script: string): Promise<void> {
    await this.target.query(script);
  }

  async transaction<T>(work: (tx: SqlClient) => Promise<T>): Promise<T> {
    if (!('connect' in this.target) || !('totalCount' in this.target)) {
      throw new TypeError('Nested transactions are not supported.');
    }
    const client = await this.target.connect();
    let broken = false;
    try {
      await client.query('BEGIN');
      const result = await work(new PgClient(client));
      await client.query('COMMIT');
      return result;
    } catch (error) {
      try {
        await client.query('ROLLBACK');
      } catch {
        // The connection itself failed, so it must not go back to the pool.
        broken = true;
      }
      throw error;
    } finally {
      client.release(broken);
    }
  }
}

class PGliteClient implements SqlClient {
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
}

export function sqlClientForPool(pool: pg.Pool): SqlClient {
  return new PgClient(pool);
}

export function sqlClientForPGlite(db: PGlite): SqlClient {
  return new PGliteClient(db);
}
