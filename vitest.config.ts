import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    // Two cores: two test files at a time; each API test file starts its own server.
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Vitest's own environment stays in test mode; the app reads NODE_ENV from the config it is given.
    env: { NODE_ENV: 'test' },
  },
});
