import { describe, expect, it } from 'vitest';

import { parseJsonBody } from '../../src/http/app.js';

/** Returns the error that parseJsonBody throws for `text`. */
function rejection(text: string): Error & { code?: string } {
  try {
    parseJsonBody(text);
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error(`parseJsonBody accepted ${text.slice(0, 40)}`);
}

describe('parseJsonBody', () => {
  it.each([
    ['__proto__ key', '{"__proto__":1}', '.__proto__'],
    ['constructor.prototype pair', '{"constructor":{"prototype":1}}', '.constructor.prototype'],
  ])('shortens the path of a deep %s', (_name, inner, end) => {
    const depth = 30_000;
    const error = rejection(`${'['.repeat(depth)}${inner}${']'.repeat(depth)}`);

    expect(error.code, 'code').toBe('PROTOTYPE_KEY');
    expect(error.message, 'path').toContain(`body${'[0]'.repeat(8)}…`);
    expect(error.message, 'key').toContain(`[0]${end},`);
    expect(error.message.length, 'message length').toBeLessThan(300);
  });

  it('keeps a shallow prototype key path whole', () => {
    const error = rejection('{"a":[1,{"b":{"__proto__":{}}}]}');

    expect(error.code, 'code').toBe('PROTOTYPE_KEY');
    expect(error.message, 'path').toContain('body.a[1].b.__proto__,');
  });
});
