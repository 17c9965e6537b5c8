/**
 * Suggestions for a time zone name that the runtime does not know, such as
 * `Europe/Pargue` or `new york`, from the IANA names of the runtime's
 * `Intl.supportedValuesOf('timeZone')`.
 */

/** Maximum number of names that one suggestion lists. */
const MAX_SUGGESTIONS = 3;
/** Maximum number of edits (insertions, deletions, substitutions) between a name and a suggestion. */
const MAX_EDITS = 2;
/** Shortest name that may be within MAX_EDITS of a suggestion; shorter names get one edit. */
const MIN_LENGTH_FOR_MAX_EDITS = 8;
/** Shortest city part that suggests the cities that start with it, such as `prag` for Prague. */
const MIN_PREFIX_LENGTH = 4;

let knownZones: readonly string[] | null = null;

function zoneNames(): readonly string[] {
  knownZones ??= Intl.supportedValuesOf('timeZone');
  return knownZones;
}

/** Returns a name in the form that the comparisons use: lower case, with `_` for spaces. */
function comparable(name: string): string {
  return name.trim().toLowerCase().replace(/[\s-]+/g, '_');
}

/** Returns the part of a zone name after its last `/`, such as `new_york` for `america/new_york`. */
function lastPart(name: string): string {
  return name.slice(name.lastIndexOf('/') + 1);
}

/** Returns the edits that a suggestion for `text` may be away from it. */
function allowedEdits(text: string): number {
  return text.length >= MIN_LENGTH_FOR_MAX_EDITS ? MAX_EDITS : 1;
}

/** Returns the edit distance of `a` and `b`, or `max + 1` once it exceeds `max`. */
function editDistance(a: string, b: string, max: number): number {
  if (Math.abs(a.length - b.length) > max) {
    return max + 1;
  }
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i += 1) {
    const current = [i];
    let rowMin = i;
    for (let j = 1; j <= b.length; j += 1) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      const value = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost);
      current.push(value);
      rowMin = Math.min(rowMin, value);
    }
    if (rowMin > max) {
      return max + 1;
    }
    previous = current;
  }
  return previous[b.length]!;
}

/**
 * Returns up to three IANA zone names close to `name`. The comparison ignores
 * case and reads spaces and hyphens as underscores. It returns the zones whose
 * city part equals the last part of `name`, else those whose city starts with
 * it, else those within a few edits of it, closest first. Short names get one
 * edit, so that `LA` or `CEST` do not suggest unrelated cities.
 */
export function suggestTimeZones(name: string): string[] {
  const requested = comparable(name);
  if (requested === '' || requested.length > 64) {
    return [];
  }
  const requestedCity = lastPart(requested);
  const sameCity = zoneNames().filter((zone) => lastPart(comparable(zone)) === requestedCity);
  if (sameCity.length > 0) {
    return sameCity.slice(0, MAX_SUGGESTIONS);
  }
  if (requestedCity.length >= MIN_PREFIX_LENGTH) {
    const cityStart = zoneNames().filter((zone) => lastPart(comparable(zone)).startsWith(requestedCity));
    if (cityStart.length > 0) {
      return cityStart.slice(0, MAX_SUGGESTIONS);
    }
  }
  const scored: Array<{ zone: string; edits: number }> = [];
  for (const zone of zoneNames()) {
    const candidate = comparable(zone);
    const edits = Math.min(
      editDistance(requested, candidate, allowedEdits(requested)),
      requested.includes('/') ? MAX_EDITS + 1 : editDistance(requestedCity, lastPart(candidate), allowedEdits(requestedCity)),
    );
    if (edits <= allowedEdits(requested.includes('/') ? requested : requestedCity)) {
      scored.push({ zone, edits });
    }
  }
  scored.sort((first, second) => first.edits - second.edits || first.zone.localeCompare(second.zone));
  return scored.slice(0, MAX_SUGGESTIONS).map((entry) => entry.zone);
}

/** Returns the error message for an unknown time zone, with suggestions when some names are close. */
export function unknownTimeZoneMessage(name: string): string {
  const quotedName = JSON.stringify(name.slice(0, 64));
  const suggestions = suggestTimeZones(name);
  const hint = suggestions.length === 0 ? '' : ` Did you mean ${suggestions.join(', ')}?`;
  return `Time zone ${quotedName} is unknown.${hint} Use an IANA name such as Europe/Prague or America/New_York.`;
}
