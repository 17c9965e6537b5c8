/**
 * A bracket-depth scan of GraphQL query text, run before graphql-js parses
 * it. The parser descends recursively into nested objects and lists, so a
 * deeply nested inline literal would exhaust the stack (graphql 16.15 on
 * Node 20 fails at about 2,000 levels) long before the token limit applies.
 */

/**
 * Returns the deepest nesting of `{`, `[` and `(` outside strings and
 * comments, or stops early and returns `limit + 1` once it exceeds `limit`.
 */
export function measureBracketDepth(source: string, limit: number): number {
  let depth = 0;
  let deepest = 0;
  let index = 0;
  const length = source.length;

  while (index < length) {
    const char = source[index];

    if (char === '#') {
      // A comment runs to the end of the line.
      while (index < length && source[index] !== '\n' && source[index] !== '\r') {
        index += 1;
      }
      continue;
    }

    if (char === '"') {
      index = skipString(source, index);
      continue;
    }

    if (char === '{' || char === '[' || char === '(') {
      depth += 1;
      if (depth > deepest) {
        deepest = depth;
        if (deepest > limit) {
          return limit + 1;
        }
      }
    } else if (char === '}' || char === ']' || char === ')') {
      depth = Math.max(0, depth - 1);
    }
    index += 1;
  }
  return deepest;
}

/** Returns the index just after the string that starts at `start` (a plain or block string). */
function skipString(source: string, start: number): number {
  if (source.startsWith('"""', start)) {
    // A block string ends at the first triple quote not escaped as \""".
    let end = source.indexOf('"""', start + 3);
    while (end !== -1 && source[end - 1] === '\\') {
      end = source.indexOf('"""', end + 3);
    }
    return end === -1 ? source.length : end + 3;
  }
  let index = start + 1;
  while (index < source.length) {
    const char = source[index];
    if (char === '\\') {
      index += 2;
      continue;
    }
    if (char === '"' || char === '\n') {
      return index + 1;
    }
    index += 1;
  }
  return index;
}
