/** The inventory as Markdown, for people: one section per schema, one per table or view. */
import type { FunctionDoc, GrantDoc, Inventory, RoleDoc, TableDoc, TypeDoc, ViewDoc } from './inventory';

const cell = (text: string | null | undefined) => (text ?? '').replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ');
const code = (text: string) => `\`${text.replace(/`/g, "'")}\``;
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

function grantLines(grants: GrantDoc[]): string[] {
  return grants.length ? ['', 'Grants:', ...grants.map((g) => `- ${g.grantee}: ${g.privileges.join(', ')}`)] : [];
}

function rowCount(rows: TableDoc['rows'], tree: boolean): string {
  if (rows.exact !== undefined) return `${rows.exact} rows (counted)`;
  if (rows.estimate === null) return tree ? 'rows: no partition analyzed yet' : 'rows: never analyzed';
  return `about ${rows.estimate} rows`;
}

const sizes = (b: TableDoc['bytes']) => `${mb(b.total)} (table ${mb(b.table)}, indexes ${mb(b.indexes)})`;

function table(t: TableDoc, schema: string): string[] {
  const tree = t.measuredOver === 'partition tree';
  const out = [
    `### ${t.kind === 'table' ? 'Table' : t.kind === 'partitioned table' ? 'Partitioned table' : 'Foreign table'} ${code(`${schema}.${t.name}`)}`,
    '',
    `Owner ${t.owner}; ${t.partitioning ? `partitioned by ${code(t.partitioning.key)}; ` : ''}` +
      `row-level security ${t.rls.enabled ? 'on' : 'off'}${t.rls.forced ? ' (forced for the owner too)' : ''}; ${rowCount(t.rows, tree)}; ` +
      `${sizes(t.bytes)}${tree ? ', summed over its partitions' : ''}.`,
  ];
  if (t.partitionOf) out.push('', `Partition of ${code(t.partitionOf.parent)} ${t.partitionOf.bound}.`);
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
  if (t.partitioning) out.push(...list('Partitions', t.partitioning.partitions.map((p) => `${code(p.name)}: ${p.bound}`)));
  out.push(...list('Constraints', t.constraints.map((c) => `${code(c.name)} ${c.type}: ${code(c.definition)}${c.inherited ? ' (inherited)' : ''}`)));
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
  if (v.materialized) {
    const m = v.materialized;
    out.push('', `${m.populated ? 'Populated' : 'Not populated (WITH NO DATA)'}; ${rowCount(m.rows, false)}; ${sizes(m.bytes)}.`);
  }
  if (v.dependsOn.length) out.push('', `Reads: ${v.dependsOn.join(', ')}`);
  out.push('', '```sql', v.definition.trim(), '```');
  if (v.indexes.length) out.push('', 'Indexes:', ...v.indexes.map((i) => `- ${code(i.definition)}`));
  out.push(...grantLines(v.grants));
  return [...out, ''];
}

const literal = (text: string) => `'${text.replace(/'/g, "''")}'`;

function typeLine(t: TypeDoc): string {
  const name = code(t.name);
  switch (t.kind) {
    case 'enum': return `- ${name} enum: ${t.labels.map(literal).join(', ')}`;
    case 'composite': return `- ${name} composite: (${t.fields.map((f) => `${f.name} ${f.type}${f.collation ? ` COLLATE ${f.collation}` : ''}`).join(', ')})`;
    case 'range': return `- ${name} range of ${t.subtype}`;
    case 'domain': return `- ${name} domain over ${t.baseType}` + (t.collation ? ` COLLATE ${t.collation}` : '') + (t.notNull ? ', NOT NULL' : '') +
      (t.default !== null ? `, default ${code(t.default)}` : '') + (t.checks.length ? `; checks: ${t.checks.map((c) => `${code(c.name)}: ${code(c.definition)}`).join(', ')}` : '');
  }
}

function functionLines(f: FunctionDoc, schema: string): string[] {
  const traits = [
    f.kind === 'procedure' ? 'procedure' : `${f.kind} returning ${f.result ?? 'void'}`,
    f.language, f.volatility, f.strict ? 'strict' : '', f.securityDefiner ? '**security definer**' : '', f.parallel === 'unsafe' ? '' : `parallel ${f.parallel}`,
    ...f.config.map((c) => code(`SET ${c}`)),
  ].filter(Boolean);
  const out = [`- ${code(`${schema}.${f.name}(${f.signature})`)}: ${traits.join(', ')}; owner ${f.owner}` +
    (f.bodySha256 ? `; body sha256 ${f.bodySha256.slice(0, 12)}` : '')];
  if (f.arguments !== f.signature) out.push(`  - arguments: ${code(f.arguments)}`);
  if (f.comment) out.push(`  - ${cell(f.comment)}`);
  if (f.grants.length) out.push(`  - grants: ${f.grants.map((g) => `${g.grantee}: ${g.privileges.join(', ')}`).join('; ')}`);
  return out;
}

function roleRow(r: RoleDoc): string {
  const attributes = [
    r.login ? 'login' : '', r.superuser ? 'superuser' : '', r.createRole ? 'createrole' : '', r.createDb ? 'createdb' : '',
    r.replication ? 'replication' : '', r.bypassRls ? 'bypassrls' : '', r.inherit ? '' : 'noinherit',
    r.connectionLimit >= 0 ? `connection limit ${r.connectionLimit}` : '',
  ].filter(Boolean).join(', ');
  const memberOf = r.memberOf.map((m) => {
    const options = [m.admin ? 'admin' : '', m.inherit === false ? 'noinherit' : '', m.set === false ? 'noset' : ''].filter(Boolean);
    return `${m.role}${options.length ? ` (${options.join(', ')})` : ''}`;
  }).join(', ');
  return `| ${cell(r.name)} | ${attributes} | ${cell(memberOf)} |`;
}

/** Extensions, roles, default privileges: the parts of the inventory that are not one schema's. */
function databaseWide(inv: Inventory): string[] {
  const out: string[] = [];
  if (inv.extensions.length) {
    out.push('## Extensions', '', '| extension | version | schema |', '|---|---|---|', ...inv.extensions.map((e) => `| ${cell(e.name)} | ${cell(e.version)} | ${cell(e.schema)} |`), '');
  }
  if (inv.roles.length) {
    out.push('## Roles', '', '| role | attributes | member of |', '|---|---|---|', ...inv.roles.map(roleRow), '');
  }
  if (inv.defaultPrivileges.length) {
    out.push('## Default privileges', '', '| for objects created by | in schema | on | grants |', '|---|---|---|---|',
      ...inv.defaultPrivileges.map((d) => `| ${cell(d.role)} | ${cell(d.schema ?? 'all schemas')} | ${d.objects} | ${cell(d.grants.map((g) => `${g.grantee}: ${g.privileges.join(', ')}`).join('; '))} |`), '');
  }
  return out;
}

export function inventoryMarkdown(inv: Inventory): string {
  const out = [`# Database ${code(inv.database)} (${inv.server})`, ''];
  for (const s of inv.schemas) {
    out.push(`## Schema ${code(s.name)}`, '',
      `Owner ${s.owner}; ${s.tables.length} tables, ${s.views.length} views, ${s.sequences.length} sequences, ${s.types.length} types, ${s.functions.length} functions.`);
    if (s.comment) out.push('', `> ${cell(s.comment)}`);
    out.push('');
    for (const t of s.tables) out.push(...table(t, s.name));
    for (const v of s.views) out.push(...view(v, s.name));
    if (s.sequences.length) {
      out.push(`### Sequences in ${code(s.name)}`, '', '| sequence | type | start | increment | min | max | cache | cycle | owned by |', '|---|---|---|---|---|---|---|---|---|');
      for (const q of s.sequences) out.push(`| ${cell(q.name)} | ${q.type} | ${q.start} | ${q.increment} | ${q.min} | ${q.max} | ${q.cache} | ${q.cycle ? 'yes' : ''} | ${cell(q.ownedBy)} |`);
      out.push('');
    }
    if (s.types.length) out.push(`### Types in ${code(s.name)}`, '', ...s.types.map(typeLine), '');
    if (s.functions.length) out.push(`### Functions in ${code(s.name)}`, '', ...s.functions.flatMap((f) => functionLines(f, s.name)), '');
  }
  if (inv.publications.length) {
    out.push('## Publications', '');
    for (const p of inv.publications) {
      out.push(`- ${code(p.name)} (${p.operations.join(', ')}): ${p.allTables ? 'all tables' : p.tables.join(', ') || 'no tables'}`);
    }
    out.push('');
  }
  out.push(...databaseWide(inv));
  return out.join('\n');
}
