/**
 * Finds a key that a JSON object repeats. JSON.parse keeps the last value of
 * a repeated key and drops the others without an error, so a body such as
 * {"type":"a","type":"b"} would store "b", although a GraphQL literal with
 * the same repeat fails validation.
 */

import { firstCharacters } from '../domain/storable.js';

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;

/** An object or array of the text that the scan is inside. */
interface Frame {
  /** Keys seen so far, or null for an array. */
  readonly keys: Set<string> | null;
  /** Index of the current item, for an array. */
  index: number;
  /** Last key read, for an object. */
  key: string;
}

/** Path segment of a key, as in body.variables.event.meta, cut to 40 characters. */
export function keySegment(key: string): string {
  return `.${firstCharacters(key, 40)}`;
}

/**
 * Maximum number of path segments in a message. A deeper path keeps its first
 * and last 8 segments around "…". JSON.parse in V8 sets no nesting limit, so
 * the whole path of a deeply nested key can be longer than the body.
 */
const MAX_PATH_SEGMENTS = 16;

/** Joins path segments, such as `[1]` and `.meta`, after `root`, shortened to MAX_PATH_SEGMENTS. */
export function bodyPath(segments: readonly string[], root = 'body'): string {
  if (segments.length <= MAX_PATH_SEGMENTS) {
    return `${root}${segments.join('')}`;
  }
  const half = MAX_PATH_SEGMENTS / 2;
  return `${root}${segments.slice(0, half).join('')}…${segments.slice(-half).join('')}`;
}

function pathOf(frames: readonly Frame[], repeated: string, root: string): string {
  const segments: string[] = [];
  for (let depth = 0; depth < frames.length - 1; depth += 1) {
    const frame = frames[depth]!;
    segments.push(frame.keys === null ? `[${frame.index}]` : keySegment(frame.key));
  }
  segments.push(keySegment(repeated));
  return bodyPath(segments, root);
}

/**
 * Returns the path of the first key that an object in `text` repeats, such
 * as body.variables.event.type for the root name `body`, or null when no
 * object repeats a key. Keys are compared after their escapes are decoded,
 * so "a" and "\u0061" repeat.
 * `text` must be valid JSON, so call it after JSON.parse accepted the text.
 */
export function repeatedKeyPath(text: string, root = 'body'): string | null {
  const frames: Frame[] = [];
  let expectKey = false;
  let position = 0;
  while (position < text.length) {
    const code = text.charCodeAt(position);
    if (code === QUOTE) {
      // Find the closing quote: one preceded by an even number of backslashes.
      let end = position;
      for (;;) {
        end = text.indexOf('"', end + 1);
        let backslashes = 0;
        while (text.charCodeAt(end - 1 - backslashes) === BACKSLASH) {
          backslashes += 1;
        }
        if (backslashes % 2 === 0) {
          break;
        }
      }
      const frame = frames[frames.length - 1];
      if (expectKey && frame?.keys) {
        const raw = text.slice(position + 1, end);
        const key = raw.includes('\\') ? (JSON.parse(text.slice(position, end + 1)) as string) : raw;
        if (frame.keys.has(key)) {
          return pathOf(frames, key, root);
        }
        frame.keys.add(key);
        frame.key = key;
        expectKey = false;
      }
      position = end + 1;
      continue;
    }
    if (code === OPEN_OBJECT) {
      frames.push({ keys: new Set(), index: 0, key: '' });
      expectKey = true;
    } else if (code === OPEN_ARRAY) {
      frames.push({ keys: null, index: 0, key: '' });
    } else if (code === CLOSE_OBJECT || code === CLOSE_ARRAY) {
      frames.pop();
      expectKey = false;
    } else if (code === COMMA) {
      const frame = frames[frames.length - 1]!;
      if (frame.keys === null) {
        frame.index += 1;
      } else {
        expectKey = true;
      }
    }
    position += 1;
  }
  return null;
}
