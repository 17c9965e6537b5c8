/** Prepared statements get one stable name per statement text, up to a limit. */
import { describe, expect, it } from 'vitest';

import { StatementNames } from '../../src/storage/postgres/sql.js';

describe('StatementNames', () => {
  it('names one text the same way each time, and two texts apart', () => {
    const names = new StatementNames();
    const first = names.nameOf('SELECT 1');

    expect(first).toMatch(/^em_[0-9a-f]{24}$/);
    expect(names.nameOf('SELECT 1')).toBe(first);
    expect(names.nameOf('SELECT 2')).not.toBe(first);
  });

  it('stops naming past the limit', () => {
    const names = new StatementNames(2);
    const firstName = names.nameOf('SELECT 1');
    names.nameOf('SELECT 2');

    expect(names.nameOf('SELECT 3')).toBeUndefined();
    expect(names.nameOf('SELECT 1')).toBe(firstName);
  });
});
