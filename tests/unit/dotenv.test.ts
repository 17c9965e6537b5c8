import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterEach, beforeEach, expect, it } from 'vitest';

import { loadDotEnvFile } from '../../src/config/dotenv.js';
import { ConfigError } from '../../src/config/index.js';

let directory: string;
const VARIABLES = ['EM_DOTENV_TEST_FROM_FILE', 'EM_DOTENV_TEST_FROM_ENV'];

beforeEach(async () => {
  directory = await mkdtemp(path.join(tmpdir(), 'em-dotenv-'));
});

afterEach(async () => {
  for (const variable of VARIABLES) {
    delete process.env[variable];
  }
  await rm(directory, { recursive: true, force: true });
});

it('loads .env without overriding environment', async () => {
  await writeFile(path.join(directory, '.env'), 'EM_DOTENV_TEST_FROM_FILE=file\nEM_DOTENV_TEST_FROM_ENV=file\n');
  process.env.EM_DOTENV_TEST_FROM_ENV = 'environment';

  loadDotEnvFile(directory);

  expect(process.env.EM_DOTENV_TEST_FROM_FILE).toBe('file');
  expect(process.env.EM_DOTENV_TEST_FROM_ENV).toBe('environment');
});

it('ignores missing .env', () => {
  expect(() => loadDotEnvFile(directory)).not.toThrow();
});

it('rejects unreadable .env as configuration', async () => {
  // A directory named .env cannot be read as a file, even by root.
  await mkdir(path.join(directory, '.env'));

  let thrown: unknown = null;
  try {
    loadDotEnvFile(directory);
  } catch (error) {
    thrown = error;
  }

  expect(thrown).toBeInstanceOf(ConfigError);
  const message = (thrown as ConfigError).message;
  expect(message).toContain(path.join(directory, '.env'));
  expect(message).toContain('it is a directory');
  expect(message).toContain('remove it');
});
