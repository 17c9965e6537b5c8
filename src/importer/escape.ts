/**
 * Escaping of text from input files and server replies before it goes into
 * a message on a terminal.
 */

/**
 * Control characters other than tab: C0, DEL and C1. On a terminal, ESC and
 * the C1 controls start escape sequences that recolour, move or clear the
 * screen, and CR or LF would split one message over several lines.
 */
const CONTROL_CHARACTERS = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f]/g;

/** Replaces each control character other than tab with its `\uXXXX` escape, as JSON writes it. */
export function escapeControlCharacters(text: string): string {
  return text.replace(CONTROL_CHARACTERS, (character) => {
    const code = character.charCodeAt(0).toString(16).padStart(4, '0');
    return `\\u${code}`;
  });
}
