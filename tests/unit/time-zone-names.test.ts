/**
 * Suggestions for unknown time zone names, from the runtime's IANA names.
 */
import { describe, expect, it } from 'vitest';

import { suggestTimeZones, unknownTimeZoneMessage } from '../../src/domain/interval/time-zone-names.js';

describe('suggestTimeZones', () => {
  it.each([
    ['Europe/Pargue', 'Europe/Prague'],
    ['Europe/Prag', 'Europe/Prague'],
    ['Prag', 'Europe/Prague'],
    ['new york', 'America/New_York'],
    ['Los-Angeles', 'America/Los_Angeles'],
    ['tokyo', 'Asia/Tokyo'],
    ['Amerika/Chicago', 'America/Chicago'],
  ])('suggests for %j', (name, expected) => {
    expect(suggestTimeZones(name)).toContain(expected);
  });

  it.each(['Mars/Olympus_Mons', '', 'x'.repeat(65), 'LA', 'CEST', 'Munich'])('suggests nothing for %j', (name) => {
    expect(suggestTimeZones(name)).toEqual([]);
  });

  it('lists at most three names', () => {
    expect(suggestTimeZones('Europe/Pari').length).toBeLessThanOrEqual(3);
  });
});

describe('unknownTimeZoneMessage', () => {
  it('names the zone and a suggestion', () => {
    const message = unknownTimeZoneMessage('Europe/Pargue');

    expect(message).toContain('"Europe/Pargue" is unknown');
    expect(message).toContain('Did you mean Europe/Prague?');
  });

  it('omits the question without suggestions', () => {
    expect(unknownTimeZoneMessage('Mars/Olympus_Mons')).not.toContain('Did you mean');
  });
});
