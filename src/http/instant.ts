/**
 * RFC 3339 instants with an explicit offset (`Z` or `+hh:mm`); anything
 * without an offset is rejected, because its meaning depends on a zone the
 * server cannot know.
 */
const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;

export function parseInstant(text: string): Date | null {
  const match = RFC3339.exec(text);
  if (match === null) {
    return null;
  }
  const [, year, month, day, hour, minute, second] = match.map(Number) as number[];
  if (
    month === undefined || day === undefined || hour === undefined || minute === undefined || second === undefined ||
    month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 59
  ) {
    return null;
  }
  const date = new Date(text.replace(' ', 'T'));
  if (Number.isNaN(date.getTime()) || year === undefined) {
    return null;
  }
  return date;
}
