// Generates the code that is never edited by hand: GraphQL resolver types
// (graphql-codegen) and the Prisma client. Runs on `npm install` and before
// the build, so a fresh clone needs no extra step.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = (name) => join(root, 'node_modules', '.bin', name);

function run(command, args, env = {}) {
  execFileSync(command, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
}

if (!existsSync(bin('graphql-codegen')) || !existsSync(bin('prisma'))) {
  // A production install without dev dependencies has no generators; the
  // build output must then come from a machine that ran them.
  console.warn('generate: graphql-codegen or prisma is not installed, skipping code generation');
  process.exit(0);
}

run(bin('graphql-codegen'), ['--config', 'codegen.yml', '--silent']);

// `prisma generate` checks that a schema engine binary exists even though
// generation does not run it, and this environment cannot download one. Any
// existing file satisfies the check unless the user already set a real engine.
const env = {};
let placeholderDir = null;
if (!process.env.PRISMA_SCHEMA_ENGINE_BINARY) {
  placeholderDir = mkdtempSync(join(tmpdir(), 'em-prisma-'));
  const placeholder = join(placeholderDir, 'schema-engine');
  writeFileSync(placeholder, '#!/bin/sh\necho "schema engine not installed" >&2\nexit 1\n', {
    mode: 0o755,
  });
  env.PRISMA_SCHEMA_ENGINE_BINARY = placeholder;
}
env.PRISMA_HIDE_UPDATE_MESSAGE = '1';
try {
  run(bin('prisma'), ['generate', '--schema', 'prisma/schema.prisma'], env);
} finally {
  if (placeholderDir !== null) {
    rmSync(placeholderDir, { recursive: true, force: true });
  }
}
