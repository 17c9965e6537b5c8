/**
 * Instants with second 60 and another fault, which every parser must report
 * by that fault instead of as a leap second: the same text with second 59 is
 * invalid too.
 */
export const SECOND_60_WITH_OTHER_FAULT: ReadonlyArray<readonly [string, string]> = [
  ['an invalid month', '2016-13-31T23:59:60Z'],
  ['February 30', '2016-02-30T23:59:60Z'],
  ['hour 24', '2016-12-31T24:59:60Z'],
  ['minute 60', '2016-12-31T23:60:60Z'],
  ['offset +25:00', '2016-12-31T23:59:60+25:00'],
  ['a year before 0100', '0050-12-31T23:59:60Z'],
];
