import { createRequire } from 'node:module';
import { defineConfig } from 'vitest/config';

const require = createRequire(import.meta.url);

export default defineConfig({
  resolve: {
    // Vite would pick graphql-js's ESM build ("module") for the source, while
    // Apollo Server, loaded by Node, gets the CommonJS build ("main"). Two
    // copies break graphql-js's instanceof checks, such as the one that
    // passes a scalar's own GraphQLError on, so tests would see errors that
    // `npm start` does not send. This gives the source the CommonJS build too.
    alias: [{ find: /^graphql$/, replacement: require.resolve('graphql') }],
  },
  test: {
    include: ['tests/**/*.test.ts'],
    globalSetup: ['tests/support/global-setup.ts'],
    // Two cores: two test files at a time; each API test file starts its own server.
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Vitest's own environment stays in test mode; the app reads NODE_ENV from the config it is given.
    env: { NODE_ENV: 'test' },
  },
});
