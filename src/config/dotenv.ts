import { existsSync } from 'node:fs';
import path from 'node:path';

/**
 * Loads `.env` from the working directory into `process.env` when the file
 * exists. Variables already set in the environment win over the file
 * (Node's `process.loadEnvFile` does not overwrite them).
 */
export function loadDotEnvFile(directory = process.cwd()): void {
  const file = path.join(directory, '.env');
  if (existsSync(file)) {
    process.loadEnvFile(file);
  }
}
