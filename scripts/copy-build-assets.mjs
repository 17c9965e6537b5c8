// Copies the files that the server reads at run time into the output of
// `tsc`, which writes only the modules it compiles. The server finds them
// relative to its own modules (SCHEMA_PATH in src/graphql/server.ts and
// MIGRATIONS_DIR in src/storage/postgres/database.ts), so dist/src/main.js
// reads dist/schema.graphql and dist/prisma/migrations.
// Usage: node scripts/copy-build-assets.mjs [OUT_DIR], OUT_DIR defaulting to dist.
import { cpSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = resolve(process.argv[2] ?? join(root, 'dist'));

cpSync(join(root, 'schema.graphql'), join(outDir, 'schema.graphql'));
// Removed first, so that a migration deleted from the source leaves no copy behind.
rmSync(join(outDir, 'prisma', 'migrations'), { recursive: true, force: true });
cpSync(join(root, 'prisma', 'migrations'), join(outDir, 'prisma', 'migrations'), { recursive: true });
