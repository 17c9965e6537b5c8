/**
 * Instants survive a PostgreSQL database whose default time zone is not UTC.
 * `openDatabase` pins each session to UTC because @prisma/adapter-pg 7 sends
 * timestamptz parameters without an offset. These tests write through Prisma
 * and raw SQL, then read back through Prisma, raw SQL and a separate `pg`
 * client that keeps the database's own zone.
 */
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';

import { PrismaPg } from '@prisma/adapter-pg';
import { DateTime } from 'luxon';
import pg from 'pg';
import pino from 'pino';
import { describe, expect, it } from 'vitest';

import { PrismaClient } from '../../src/storage/postgres/generated/client.js';
import { openDatabase, type Database } from '../../src/storage/postgres/database.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { describeWithPostgres, postgresUrl } from '../support/services.js';

const ZONES = ['America/New_York', 'Asia/Kolkata'] as const;

// Either side of the 2026 switch to daylight saving time in New York
// (2026-03-08 07:00 UTC), with milliseconds.
const BEFORE_SWITCH = new Date('2026-03-08T06:30:00.123Z');
const AFTER_SWITCH = new Date('2026-03-08T07:30:00.456Z');

async function createZonedDatabase(zone: string): Promise<TestDatabase> {
  const baseUrl = postgresUrl();
  if (baseUrl === undefined) {
    throw new Error('DATABASE_URL is not set.');
  }
  return createTestDatabase(baseUrl, { prefix: 'em_test_tz', settings: [`timezone TO '${zone}'`] });
}

/** Opens the database with openDatabase and a plain `pg` client that keeps the database's zone. */
async function withDatabases(
  zone: string,
  work: (db: Database, plain: pg.Client, url: string) => Promise<void>,
): Promise<void> {
  const zoned = await createZonedDatabase(zone);
  let db: Database | null = null;
  const plain = new pg.Client({ connectionString: zoned.url });
  try {
    db = await openDatabase({
      databaseUrl: zoned.url,
      dataDir: tmpdir(),
      poolSize: 2,
      statementTimeoutMs: 10_000,
      logger: pino({ level: 'silent' }),
    });
    await db.migrate();
    await plain.connect();
    await work(db, plain, zoned.url);
  } finally {
    await plain.end().catch(() => {});
    await db?.close();
    await zoned.drop();
  }
}

async function createUser(prisma: PrismaClient, createdAt: Date): Promise<string> {
  const id = randomUUID();
  await prisma.user.create({
    data: { id, username: `tz-${id.slice(0, 8)}`, role: 'MEMBER', passwordHash: 'not-a-hash', createdAt },
  });
  return id;
}

/** Reads `created_at` as milliseconds since the epoch, computed by PostgreSQL. */
async function epochMs(query: (text: string, params: unknown[]) => Promise<Array<{ ms: string }>>, id: string) {
  const rows = await query(
    `SELECT (extract(epoch FROM created_at) * 1000)::bigint::text AS ms FROM users WHERE id = $1`,
    [id],
  );
  return Number(rows[0]?.ms);
}

describeWithPostgres('instants in a non-UTC PostgreSQL database', () => {
  describe.each(ZONES)('database zone %s', (zone) => {
    it('sessions see the zones', async () => {
      await withDatabases(zone, async (db, plain) => {
        const plainZone = await plain.query<{ zone: string }>(`SELECT current_setting('TimeZone') AS zone`);
        expect(plainZone.rows[0]?.zone).toBe(zone);

        const pinned = await db.sql.query<{ zone: string }>(`SELECT current_setting('TimeZone') AS zone`);
        expect(pinned[0]?.zone).toBe('UTC');
      });
    });

    it('Prisma write read back everywhere', async () => {
      await withDatabases(zone, async (db, plain) => {
        for (const instant of [BEFORE_SWITCH, AFTER_SWITCH]) {
          const id = await createUser(db.prisma, instant);

          const viaPrisma = await db.prisma.user.findUniqueOrThrow({ where: { id } });
          expect(viaPrisma.createdAt.toISOString()).toBe(instant.toISOString());

          const viaSql = await db.sql.query<{ created_at: Date }>(`SELECT created_at FROM users WHERE id = $1`, [id]);
          expect(viaSql[0]?.created_at.toISOString()).toBe(instant.toISOString());
          expect(await epochMs((text, params) => db.sql.query(text, params), id)).toBe(instant.getTime());

          expect(await epochMs(async (text, params) => (await plain.query(text, params)).rows, id)).toBe(
            instant.getTime(),
          );
          const utcText = await plain.query<{ text: string }>(
            `SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS text FROM users WHERE id = $1`,
            [id],
          );
          expect(utcText.rows[0]?.text).toBe(instant.toISOString());
        }
      });
    });

    it('Prisma filters match instant', async () => {
      await withDatabases(zone, async (db) => {
        const id = await createUser(db.prisma, AFTER_SWITCH);

        const atOrAfter = await db.prisma.user.findMany({ where: { createdAt: { gte: AFTER_SWITCH } } });
        expect(atOrAfter.map((user) => user.id)).toContain(id);

        const after = await db.prisma.user.findMany({ where: { createdAt: { gt: AFTER_SWITCH } } });
        expect(after.map((user) => user.id)).not.toContain(id);
      });
    });

    it('SQL write read by Prisma', async () => {
      await withDatabases(zone, async (db, plain) => {
        const id = await createUser(db.prisma, BEFORE_SWITCH);
        await db.sql.query(`UPDATE users SET max_occurred_at = $1 WHERE id = $2`, [AFTER_SWITCH, id]);

        const viaPrisma = await db.prisma.user.findUniqueOrThrow({ where: { id } });
        expect(viaPrisma.maxOccurredAt?.toISOString()).toBe(AFTER_SWITCH.toISOString());

        const viaPlain = await plain.query<{ ms: string }>(
          `SELECT (extract(epoch FROM max_occurred_at) * 1000)::bigint::text AS ms FROM users WHERE id = $1`,
          [id],
        );
        expect(Number(viaPlain.rows[0]?.ms)).toBe(AFTER_SWITCH.getTime());
      });
    });

    // NOTE: this documents the adapter behaviour that the UTC pin works
    // around (@prisma/adapter-pg 7.10). If it fails after an upgrade, the
    // adapter now sends offsets and the pin may be unnecessary.
    it('unpinned adapter shifts instants', async () => {
      await withDatabases(zone, async (_db, plain, url) => {
        const pool = new pg.Pool({ connectionString: url, max: 1 });
        const unpinned = new PrismaClient({ adapter: new PrismaPg(pool) });
        try {
          const id = await createUser(unpinned, BEFORE_SWITCH);

          // The UTC wall-clock time is stored as if it were local time in `zone`.
          const wallClock = BEFORE_SWITCH.toISOString().slice(0, -1);
          const shifted = DateTime.fromISO(wallClock, { zone }).toMillis();
          expect(shifted).not.toBe(BEFORE_SWITCH.getTime());
          expect(await epochMs(async (text, params) => (await plain.query(text, params)).rows, id)).toBe(shifted);

          // Prisma reads it back unchanged, so Prisma-only tests cannot see the shift.
          const viaPrisma = await unpinned.user.findUniqueOrThrow({ where: { id } });
          expect(viaPrisma.createdAt.toISOString()).toBe(BEFORE_SWITCH.toISOString());
        } finally {
          await unpinned.$disconnect();
          await pool.end();
        }
      });
    });
  });
});
