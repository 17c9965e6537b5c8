/**
 * Converts WSU CASAS sensor logs into NDJSON import records.
 * Usage: npm run -s convert:casas -- [--time-zone ZONE] [--user NAME] FILE... > events.ndjson
 */

import { runConvertCommand } from '../importer/convert-command.js';

const exitCode = await runConvertCommand(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
});
process.exitCode = exitCode;
