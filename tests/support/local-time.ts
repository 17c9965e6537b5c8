/**
 * Local calendar fields of an instant from Intl, independent of luxon, for
 * tests that check the server's bucket boundaries against a second source.
 */
const formatters = new Map<string, Intl.DateTimeFormat>();

/** Returns the local year, month, day, hour, weekday and UTC offset (`timeZoneName`) of `ms` in `timeZone`. */
export function localFields(ms: number, timeZone: string): Record<string, string> {
  let formatter = formatters.get(timeZone);
  if (formatter === undefined) {
    formatter = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      weekday: 'short',
      timeZoneName: 'longOffset',
    });
    formatters.set(timeZone, formatter);
  }
  const fields: Record<string, string> = {};
  for (const part of formatter.formatToParts(ms)) {
    fields[part.type] = part.value;
  }
  return fields;
}
