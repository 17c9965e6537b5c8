/** Tables for the terminal and for Markdown. */

export interface Table {
  title: string;
  headers: string[];
  rows: string[][];
  /** Lines printed under the table, such as what a ratio means. */
  notes?: string[];
}

/** Renders a table with space-padded columns, with numeric-looking cells right-aligned. */
export function renderText(table: Table): string {
  const widths = table.headers.map((header, column) =>
    Math.max(header.length, ...table.rows.map((row) => (row[column] ?? '').length)),
  );
  const numeric = /^[-+]?[\d.,]+( ?[a-zA-Z%µ/]+)?$/;
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => (numeric.test(cell) ? cell.padStart(widths[column]!) : cell.padEnd(widths[column]!)))
      .join('  ')
      .trimEnd();
  const out = [table.title, line(table.headers), widths.map((width) => '-'.repeat(width)).join('  ')];
  for (const row of table.rows) {
    out.push(line(row));
  }
  for (const note of table.notes ?? []) {
    out.push(note);
  }
  return out.join('\n');
}

export function renderMarkdown(table: Table): string {
  const escape = (cell: string) => cell.replace(/\|/g, '\\|');
  const out = [
    `| ${table.headers.map(escape).join(' | ')} |`,
    `| ${table.headers.map(() => '---').join(' | ')} |`,
    ...table.rows.map((row) => `| ${row.map(escape).join(' | ')} |`),
  ];
  if (table.notes !== undefined && table.notes.length > 0) {
    out.push('', ...table.notes);
  }
  return out.join('\n');
}

/** Formats a number with a fixed count of decimals and thousands separators. */
export function formatNumber(value: number, decimals = 0): string {
  if (!Number.isFinite(value)) {
    return 'n/a';
  }
  return value.toLocaleString('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}
