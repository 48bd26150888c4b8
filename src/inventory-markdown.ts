/** The inventory as Markdown, for people: one section per schema, one per table or view. */
import type { GrantDoc, Inventory, TableDoc, ViewDoc } from './inventory';

const cell = (text: string | null | undefined) => (text ?? '').replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ');
const code = (text: string) => `\`${text.replace(/`/g, "'")}\``;
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

function grantLines(grants: GrantDoc[]): string[] {
  return grants.length ? ['', 'Grants:', ...grants.map((g) => `- ${g.grantee}: ${g.privileges.join(', ')}`)] : [];
}

function table(t: TableDoc, schema: string): string[] {
  const rows = t.rows.exact !== undefined ? `${t.rows.exact} rows (counted)` : t.rows.estimate === null ? 'rows: never analyzed' : `about ${t.rows.estimate} rows`;
  const out = [
    `### ${t.kind === 'table' ? 'Table' : t.kind === 'partitioned table' ? 'Partitioned table' : 'Foreign table'} ${code(`${schema}.${t.name}`)}`,
    '',
    `Owner ${t.owner}; row-level security ${t.rls.enabled ? 'on' : 'off'}${t.rls.forced ? ' (forced for the owner too)' : ''}; ${rows}; ` +
      `${mb(t.bytes.total)} (table ${mb(t.bytes.table)}, indexes ${mb(t.bytes.indexes)}).`,
  ];
  if (t.comment) out.push('', `> ${cell(t.comment)}`);
  out.push('', '| column | type | not null | default | notes |', '|---|---|---|---|---|');
  for (const c of t.columns) {
    const notes = [
      c.identity ? `identity (${c.identity})` : '',
      c.generated ? `generated: ${code(c.generated)}` : '',
      c.collation ? `collation ${c.collation}` : '',
      c.comment ? cell(c.comment) : '',
    ].filter(Boolean).join('; ');
    out.push(`| ${cell(c.name)} | ${cell(c.type)} | ${c.notNull ? 'yes' : ''} | ${c.default ? cell(code(c.default)) : ''} | ${notes} |`);
  }
  const list = (title: string, items: string[]) => (items.length ? ['', `${title}:`, ...items.map((i) => `- ${i}`)] : []);
  out.push(...list('Constraints', t.constraints.map((c) => `${code(c.name)} ${c.type}: ${code(c.definition)}`)));
  out.push(...list('Indexes', t.indexes.map((i) => code(i.definition))));
  out.push(...list('Triggers', t.triggers.map((tr) => `${code(tr.definition)}${tr.enabled === 'origin' ? '' : ` (enabled: ${tr.enabled})`}`)));
  out.push(...list('Policies', t.policies.map((p) =>
    `${code(p.name)}: ${p.permissive ? 'permissive' : 'restrictive'}, ${p.command}, to ${p.roles.join(', ')}` +
    (p.using ? `; using ${code(p.using)}` : '') + (p.withCheck ? `; with check ${code(p.withCheck)}` : ''))));
  out.push(...grantLines(t.grants));
  out.push(...list('Publications', t.publications));
  return [...out, ''];
}

function view(v: ViewDoc, schema: string): string[] {
  const out = [`### ${v.kind === 'view' ? 'View' : 'Materialized view'} ${code(`${schema}.${v.name}`)}`, '', `Owner ${v.owner}; columns: ${v.columns.map((c) => `${c.name} ${c.type}`).join(', ')}.`];
  if (v.comment) out.push('', `> ${cell(v.comment)}`);
  if (v.dependsOn.length) out.push('', `Reads: ${v.dependsOn.join(', ')}`);
  out.push('', '```sql', v.definition.trim(), '```');
  out.push(...grantLines(v.grants));
  return [...out, ''];
}

export function inventoryMarkdown(inv: Inventory): string {
  const out = [`# Database ${code(inv.database)} (${inv.server})`, ''];
  for (const s of inv.schemas) {
    out.push(`## Schema ${code(s.name)}`, '', `Owner ${s.owner}; ${s.tables.length} tables, ${s.views.length} views, ${s.sequences.length} sequences.`);
    if (s.comment) out.push('', `> ${cell(s.comment)}`);
    out.push('');
    for (const t of s.tables) out.push(...table(t, s.name));
    for (const v of s.views) out.push(...view(v, s.name));
    if (s.sequences.length) {
      out.push(`### Sequences in ${code(s.name)}`, '', '| sequence | type | start | increment | min | max | cache | cycle | owned by |', '|---|---|---|---|---|---|---|---|---|');
      for (const q of s.sequences) out.push(`| ${cell(q.name)} | ${q.type} | ${q.start} | ${q.increment} | ${q.min} | ${q.max} | ${q.cache} | ${q.cycle ? 'yes' : ''} | ${cell(q.ownedBy)} |`);
      out.push('');
    }
  }
  if (inv.publications.length) {
    out.push('## Publications', '');
    for (const p of inv.publications) {
      out.push(`- ${code(p.name)} (${p.operations.join(', ')}): ${p.allTables ? 'all tables' : p.tables.join(', ') || 'no tables'}`);
    }
    out.push('');
  }
  return out.join('\n');
}
