import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { SCHEMA_PATH } from '../../src/graphql/server.js';
import { MIGRATIONS_DIR } from '../../src/storage/postgres/database.js';

const ROOT = resolve(import.meta.dirname, '../..');
const SCRIPT = join(ROOT, 'scripts', 'copy-build-assets.mjs');

/**
 * Returns where the compiled copy of a module in `moduleDir` looks for
 * `sourcePath`, when the source module finds it at `sourcePath` and the
 * output mirrors the repository under `outDir`, as tsc's rootDir "." does.
 */
function compiledPath(outDir: string, moduleDir: string, sourcePath: string): string {
  return join(outDir, moduleDir, relative(join(ROOT, moduleDir), sourcePath));
}

describe('build assets', () => {
  const outDir = mkdtempSync(join(tmpdir(), 'em-build-assets-'));

  beforeAll(() => {
    execFileSync(process.execPath, [SCRIPT, outDir]);
  });

  afterAll(() => rmSync(outDir, { recursive: true, force: true }));

  it('copies the schema where the server reads it', () => {
    const copied = compiledPath(outDir, 'src/graphql', SCHEMA_PATH);

    expect(existsSync(copied), copied).toBe(true);
    expect(readFileSync(copied, 'utf8')).toBe(readFileSync(SCHEMA_PATH, 'utf8'));
  });

  it('copies every migration where the migrator reads them', () => {
    const copied = compiledPath(outDir, 'src/storage/postgres', MIGRATIONS_DIR);

    expect(existsSync(copied), copied).toBe(true);
    expect(readdirSync(copied).sort()).toEqual(readdirSync(MIGRATIONS_DIR).sort());
  });
});

describe('build assets over an old build', () => {
  const outDir = mkdtempSync(join(tmpdir(), 'em-build-assets-old-'));
  const stale = join(outDir, 'prisma', 'migrations', '00000000000000_deleted', 'migration.sql');

  beforeAll(() => {
    mkdirSync(join(stale, '..'), { recursive: true });
    writeFileSync(stale, 'SELECT 1;\n');
    execFileSync(process.execPath, [SCRIPT, outDir]);
  });

  afterAll(() => rmSync(outDir, { recursive: true, force: true }));

  it('removes a migration deleted from the source', () => {
    expect(existsSync(stale), stale).toBe(false);
    expect(readdirSync(join(outDir, 'prisma', 'migrations')).sort()).toEqual(readdirSync(MIGRATIONS_DIR).sort());
  });
});
