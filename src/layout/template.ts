/**
 * Template variables in the layout's SQL (`{{table}}`, `{{project.id}}`, ...): expanded into quoted tokens only,
 * never spliced as raw text. A name becomes a quoted identifier (src/sql.ts quoteIdent), a value a quoted literal
 * with its type (quoteLiteral), so whatever a variable holds it is one token and cannot end a string, close a
 * parenthesis or start a statement. A variable may stand only where a whole token can: not inside a string, a
 * quoted identifier, a dollar-quoted body or a comment, and not glued to a word (`project_{{project.slug}}` would
 * read as two tokens). What comes out is then parsed by PostgreSQL's own parser before it runs (src/layout/load.ts).
 */
import { quoteIdent, quoteLiteral } from '../sql';

export class TemplateError extends Error {}

/** What a variable stands for: a name (quoted identifier, or schema.name) or a typed value. */
export type TemplateValue = { ident: string[] } | { literal: string; type: 'uuid' | 'text' };

export type TemplateVars = Record<string, TemplateValue>;

/** Every variable the layout knows, for messages; which are defined depends on the section. */
export const TEMPLATE_VARIABLES = ['table', 'schema', 'shared', 'system', 'project.schema', 'project.id', 'project.slug', 'project.owner', 'project.region', 'project.tier'] as const;

const WORD = /[A-Za-z0-9_$]/;

function render(v: TemplateValue): string {
  if ('ident' in v) return v.ident.map(quoteIdent).join('.');
  return `${quoteLiteral(v.literal)}::${v.type}`;
}

/** `sql` with every `{{name}}` replaced by its quoted form. Throws TemplateError naming the variable and why. */
export function expandSql(sql: string, vars: TemplateVars): string {
  let out = '';
  let i = 0;
  const quoted = (what: string, end: number) => {
    const body = sql.slice(i, end);
    if (body.includes('{{')) {
      throw new TemplateError(`a template variable inside ${what} is not expanded there: write it bare (it becomes a quoted name or a typed literal)`);
    }
    out += body;
    i = end;
  };
  while (i < sql.length) {
    const c = sql[i]!;
    const next = sql[i + 1];
    if (c === '{' && next === '{') {
      const close = sql.indexOf('}}', i + 2);
      if (close < 0) throw new TemplateError(`unclosed {{ at offset ${i}`);
      const name = sql.slice(i + 2, close).trim();
      const value = vars[name];
      if (!value) {
        const known = Object.keys(vars).sort().map((k) => `{{${k}}}`).join(', ');
        throw new TemplateError(`{{${name}}} is not a template variable here (here: ${known})`);
      }
      const before = sql[i - 1];
      const after = sql[close + 2];
      if ((before && (WORD.test(before) || before === '"')) || (after && (WORD.test(after) || after === '"'))) {
        throw new TemplateError(`{{${name}}} is glued to a word; a variable is a whole token (a quoted name or a typed literal)`);
      }
      out += render(value);
      i = close + 2;
    } else if (c === "'") {
      // E'...' strings take backslash escapes; standard ones only '' (standard_conforming_strings is on).
      const escaped = /[eE]/.test(sql[i - 1] ?? '') && !WORD.test(sql[i - 2] ?? '');
      let j = i + 1;
      for (; j < sql.length; j += 1) {
        if (escaped && sql[j] === '\\') { j += 1; continue; }
        if (sql[j] === "'") { if (sql[j + 1] === "'") { j += 1; continue; } break; }
      }
      quoted('a string', Math.min(j + 1, sql.length));
    } else if (c === '"') {
      let j = i + 1;
      for (; j < sql.length; j += 1) if (sql[j] === '"') { if (sql[j + 1] === '"') { j += 1; continue; } break; }
      quoted('a quoted identifier', Math.min(j + 1, sql.length));
    } else if (c === '-' && next === '-') {
      const end = sql.indexOf('\n', i);
      quoted('a comment', end < 0 ? sql.length : end);
    } else if (c === '/' && next === '*') {
      let depth = 0;
      let j = i;
      for (; j < sql.length; j += 1) {
        if (sql[j] === '/' && sql[j + 1] === '*') { depth += 1; j += 1; } else if (sql[j] === '*' && sql[j + 1] === '/') { depth -= 1; j += 1; if (depth === 0) break; }
      }
      quoted('a comment', Math.min(j + 1, sql.length));
    } else if (c === '$' && !WORD.test(sql[i - 1] ?? '')) {
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i));
      if (!tag) { out += c; i += 1; continue; }
      const end = sql.indexOf(tag[0], i + tag[0].length);
      quoted('a dollar-quoted body', end < 0 ? sql.length : end + tag[0].length);
    } else {
      out += c;
      i += 1;
    }
  }
  return out;
}
