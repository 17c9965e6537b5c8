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
    // Port Moresby, Port of Spain, Port-au-Prince, Porto Velho and Porto-Novo start with it.
    expect(suggestTimeZones('Port')).toHaveLength(3);
  });

  it('lists the closest names first', () => {
    // Omsk is one edit away and Tomsk two.
    expect(suggestTimeZones('Asia/Omsc')).toEqual(['Asia/Omsk', 'Asia/Tomsk']);
  });

  it.each([
    ['TOKYO', 'Asia/Tokyo'],
    ['Dar-es-Salam', 'Africa/Dar_es_Salaam'],
    ['Asia/Chicago', 'America/Chicago'],
    ['Asia/Takio', 'Asia/Tokyo'],
  ])('suggests for %j beyond two raw edits', (name, expected) => {
    expect(suggestTimeZones(name)).toEqual([expected]);
  });

  it('suggests nothing for a name over 64 characters', () => {
    // Its last part names a city, which a shorter name would get as a suggestion.
    expect(suggestTimeZones(`${'x'.repeat(60)}/Tokyo`)).toEqual([]);
  });

  it('compares a name with a region whole', () => {
    // The city part "tokio" is one edit from Tokyo, but the whole name is not within two.
    expect(suggestTimeZones('Europe/Tokio')).toEqual([]);
  });
});

describe('unknownTimeZoneMessage', () => {
  it('names the zone and a suggestion', () => {
    const message = unknownTimeZoneMessage('Europe/Pargue');

    expect(message).toContain('"Europe/Pargue" is unknown');
    expect(message).toContain('Did you mean Europe/Prague?');
  });

  it('shows at most 64 characters of the name', () => {
    const message = unknownTimeZoneMessage('z'.repeat(100));

    expect(message).toContain(`"${'z'.repeat(64)}"`);
    expect(message).not.toContain('z'.repeat(65));
  });

  it('omits the question without suggestions', () => {
    expect(unknownTimeZoneMessage('Mars/Olympus_Mons')).not.toContain('Did you mean');
  });
});
