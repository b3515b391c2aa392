// CSV rows as spreadsheets and RFC 4180 readers take them: a field quoted when it holds a comma,
// quote or line break, and text that a spreadsheet would run as a formula (starting with =, +,
// -, @, tab or CR) made inert with a leading apostrophe — names in a manifest come from users.
// Numbers are written as they are, negative ones included.

/** One field. */
export function csvField(value: string | number | boolean | null | undefined): string {
  if (value === null || value === undefined) return '';
  if (typeof value !== 'string') return String(value);
  const text = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** One row, ended with CRLF. */
export const csvRow = (values: ReadonlyArray<string | number | boolean | null | undefined>): string => `${values.map(csvField).join(',')}\r\n`;
