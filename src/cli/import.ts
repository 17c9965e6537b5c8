/**
 * Sends events from NDJSON files to an Event Master server.
 * Usage: npm run import -- [--url URL] [--batch-size N] [--concurrency N] [--json] [--strict]
 *        FILE...
 */

import { listenForStopSignals, runImportCommand } from '../importer/import-command.js';

const exitCode = await runImportCommand(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  stderrIsTTY: process.stderr.isTTY === true,
  env: process.env,
  stopSignal: listenForStopSignals(process, process.stderr),
});
process.exitCode = exitCode;
