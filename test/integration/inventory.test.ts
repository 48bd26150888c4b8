/**
 * `safeshift inventory` documents every object kind, the same way twice; `safeshift drift` finds each planted
 * difference between an expectation (SQL or an inventory JSON) and the live database, and refuses bad input
 * without changing anything.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Inventory } from '../../src/inventory';
import { catalogSnapshot, ROOT, runCli, sql, uniqueName } from '../support/helpers';

const dir = mkdtempSync(join(tmpdir(), 'safeshift-inventory-'));
const file = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};

/** A schema holding every object kind the inventory documents. */
async function richSchema(): Promise<string> {
  const s = uniqueName('inv');
  const role = `${s}_reader`;
  await sql(`CREATE SCHEMA ${s}`);
  await sql(`COMMENT ON SCHEMA ${s} IS 'inventory test'`);
  await sql(`CREATE ROLE ${role} NOLOGIN`);
  await sql(`CREATE TABLE ${s}.accounts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, handle text COLLATE "C" NOT NULL UNIQUE)`);
  await sql(`CREATE TABLE ${s}.stories (
      id serial PRIMARY KEY,
      account_id bigint NOT NULL REFERENCES ${s}.accounts (id),
      title text NOT NULL DEFAULT 'untitled' CHECK (title <> ''),
      slug text GENERATED ALWAYS AS (lower(title)) STORED,
      during tstzrange,
      EXCLUDE USING gist (during WITH &&))`);
  await sql(`COMMENT ON TABLE ${s}.stories IS 'told | shared'`);
  await sql(`COMMENT ON COLUMN ${s}.stories.title IS 'as the teller gave it'`);
  await sql(`CREATE INDEX stories_lower_title ON ${s}.stories (lower(title)) WHERE title IS NOT NULL`);
  await sql(`CREATE FUNCTION ${s}.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$`);
  await sql(`CREATE TRIGGER touch BEFORE UPDATE ON ${s}.stories FOR EACH ROW EXECUTE FUNCTION ${s}.touch()`);
  await sql(`ALTER TABLE ${s}.stories ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY`);
  await sql(`CREATE POLICY own ON ${s}.stories FOR SELECT TO ${role} USING (account_id > 0)`);
  await sql(`GRANT SELECT, INSERT ON ${s}.stories TO ${role}`);
  await sql(`CREATE VIEW ${s}.titles AS SELECT s.title, a.handle FROM ${s}.stories s JOIN ${s}.accounts a ON a.id = s.account_id`);
  await sql(`CREATE MATERIALIZED VIEW ${s}.counts AS SELECT account_id, count(*) AS n FROM ${s}.stories GROUP BY account_id`);
  await sql(`CREATE SEQUENCE ${s}.tickets START 100 INCREMENT 5 CYCLE`);
  await sql(`CREATE PUBLICATION ${s}_pub FOR TABLE ${s}.stories`);
  await sql(`INSERT INTO ${s}.accounts (handle) VALUES ('a'), ('b')`);
  await sql(`INSERT INTO ${s}.stories (account_id, title) VALUES (1, 'One'), (2, 'Two'), (2, 'Three')`);
  return s;
}

test('inventory documents every object kind, identically on two runs, as JSON and as Markdown', async () => {
  const s = await richSchema();
  const first = await runCli(['inventory', '--json', '--schema', s, '--exact-counts']);
  const second = await runCli(['inventory', '--json', '--schema', s, '--exact-counts']);
  expect(first).toMatchObject({ code: 0, stderr: '' });
  expect(second.stdout).toBe(first.stdout);
  const inv = JSON.parse(first.stdout) as Inventory;
  expect(inv.format).toBe('safeshift-inventory/1');
  expect(inv.schemas.map((x) => x.name)).toEqual([s]);
  const schema = inv.schemas[0]!;
  expect(schema.comment).toBe('inventory test');
  expect(schema.tables.map((t) => t.name)).toEqual(['accounts', 'stories']);
  expect(schema.views.map((v) => [v.name, v.kind])).toEqual([['counts', 'materialized view'], ['titles', 'view']]);
  expect(schema.sequences.map((q) => [q.name, q.ownedBy])).toEqual([
    ['accounts_id_seq', `${s}.accounts.id`], ['stories_id_seq', `${s}.stories.id`], ['tickets', null]]);
  expect(schema.sequences[2]).toMatchObject({ start: '100', increment: '5', cycle: true });

  const accounts = schema.tables[0]!;
  expect(accounts.columns).toEqual([
    expect.objectContaining({ name: 'id', type: 'bigint', notNull: true, identity: 'always' }),
    expect.objectContaining({ name: 'handle', type: 'text', notNull: true, collation: '"C"' }),
  ]);
  const stories = schema.tables[1]!;
  expect(stories).toMatchObject({ comment: 'told | shared', rls: { enabled: true, forced: true }, rows: { exact: 3 }, publications: [`${s}_pub`] });
  expect(stories.columns.find((c) => c.name === 'title')).toMatchObject({ default: `'untitled'::text`, comment: 'as the teller gave it' });
  expect(stories.columns.find((c) => c.name === 'slug')).toMatchObject({ generated: 'lower(title)', default: null });
  expect(stories.columns.find((c) => c.name === 'id')!.default).toBe(`nextval('${s}.stories_id_seq'::regclass)`);
  const kinds = stories.constraints.map((c) => c.type);
  for (const kind of ['primary key', 'foreign key', 'check', 'exclusion'] as const) expect(kinds).toContain(kind);
  expect(stories.constraints.find((c) => c.type === 'foreign key')!.definition).toBe(`FOREIGN KEY (account_id) REFERENCES ${s}.accounts(id)`);
  expect(stories.indexes.map((i) => i.name)).toEqual(expect.arrayContaining(['stories_lower_title', 'stories_pkey']));
  expect(stories.indexes.find((i) => i.name === 'stories_lower_title')!.definition).toMatch(/USING btree \(lower\(title\)\) WHERE \(title IS NOT NULL\)$/);
  expect(stories.triggers).toEqual([expect.objectContaining({ name: 'touch', enabled: 'origin' })]);
  expect(stories.policies).toEqual([{ name: 'own', command: 'SELECT', permissive: true, roles: [`${s}_reader`], using: '(account_id > 0)', withCheck: null }]);
  // The ACL as stored: the owner's own entry is there too once anything was granted.
  expect(stories.grants).toContainEqual({ grantee: `${s}_reader`, privileges: ['INSERT', 'SELECT'] });
  expect(stories.indexes.find((i) => i.name === 'stories_pkey')!.constraint).toBe('stories_pkey');
  expect(stories.indexes.find((i) => i.name === 'stories_lower_title')!.constraint).toBeNull();
  expect(stories.bytes.total).toBeGreaterThan(0);
  expect(schema.views.find((v) => v.name === 'titles')!.dependsOn).toEqual([`${s}.accounts`, `${s}.stories`]);
  expect(inv.publications.find((p) => p.name === `${s}_pub`)).toEqual({ name: `${s}_pub`, allTables: false, operations: ['insert', 'update', 'delete', 'truncate'], tables: [`${s}.stories`] });

  const md = await runCli(['inventory', '--schema', s]);
  expect(md.code).toBe(0);
  expect(md.stdout).toContain(`### Table \`${s}.stories\``);
  expect(md.stdout).toContain('row-level security on (forced for the owner too)');
  expect(md.stdout).toContain('> told \\| shared');
  expect(md.stdout).toContain(`- ${s}_reader: INSERT, SELECT`);
  expect(md.stdout).toContain(`### Materialized view \`${s}.counts\``);
});

test('drift finds each planted difference; an unchanged expectation finds none', async () => {
  const s = await richSchema();
  // The schema as the application expects it, written as SQL (unqualified names), with differences planted.
  const expected = file('expects.sql', `
    CREATE TABLE accounts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, handle text COLLATE "C" NOT NULL UNIQUE, email text NOT NULL);
    CREATE TABLE stories (
      id serial PRIMARY KEY,
      account_id integer NOT NULL REFERENCES accounts (id),
      title text DEFAULT 'draft' CHECK (title <> '') CHECK (length(title) < 200),
      slug text GENERATED ALWAYS AS (lower(title)) STORED);
    CREATE INDEX stories_by_account ON stories (account_id);
    CREATE TABLE tellers (id int PRIMARY KEY);
    CREATE VIEW titles AS SELECT title FROM stories;`);
  const before = await catalogSnapshot();
  const result = await runCli(['drift', '--expect', expected, '--schema', s, '--json']);
  expect(result).toMatchObject({ code: 1, stderr: '' });
  expect(await catalogSnapshot()).toBe(before); // the scratch schema was rolled back
  const { drift, differences } = JSON.parse(result.stdout) as { drift: boolean; differences: { object: string; kind: string; detail: string }[] };
  expect(drift).toBe(true);
  const found = differences.map((d) => `${d.kind} ${d.object}: ${d.detail}`);
  expect(found).toEqual(expect.arrayContaining([
    `missing ${s}.accounts.email: column email text NOT NULL`,
    `different ${s}.stories.account_id: type bigint, expected integer`,
    `different ${s}.stories.title: NOT NULL, expected nullable; default 'untitled'::text, expected 'draft'::text`,
    `extra ${s}.stories.during: column during tstzrange`,
    `missing ${s}.stories: constraint check CHECK (length(title) < 200)`,
    `extra ${s}.stories: constraint exclusion EXCLUDE USING gist (during WITH &&)`,
    `missing ${s}.stories: index CREATE INDEX ON stories USING btree (account_id)`,
    `extra ${s}.stories: index CREATE INDEX ON stories USING btree (lower(title)) WHERE (title IS NOT NULL)`,
    `different ${s}.stories: row-level security on, expected off`,
    `extra ${s}.stories: policy own (permissive SELECT to ${s}_reader using (account_id > 0) with check -)`,
    `missing ${s}.tellers: table tellers (id)`,
    `extra ${s}.counts: materialized view counts`,
  ]));
  expect(found.find((f) => f.startsWith(`different ${s}.titles: view definition differs`))).toBeDefined();
  // Equal things are not reported: the primary keys, the unique handle, the foreign key, the generated slug.
  expect(found.filter((f) => /primary key|unique|foreign key|\.slug:|\.handle:|index CREATE INDEX ON stories USING gist/.test(f))).toEqual([]);

  // An inventory taken now is an expectation with no drift; a column added afterwards is drift.
  const snapshot = await runCli(['inventory', '--json', '--schema', s]);
  const json = file('expects.json', snapshot.stdout);
  expect(await runCli(['drift', '--expect', json])).toMatchObject({ code: 0, stdout: 'no drift: the live database has what the expectation describes\n' });
  await sql(`ALTER TABLE ${s}.accounts ADD COLUMN nickname text`);
  const after = await runCli(['drift', '--expect', json]);
  expect(after.code).toBe(1);
  expect(after.stdout).toContain(`extra     ${s}.accounts.nickname: column nickname text`);
});

test('the Empathy Ledger example: drift finds the profiles table the application expects is not the one the database has', async () => {
  const s = uniqueName('el');
  await sql(`CREATE SCHEMA ${s}`);
  const seed = readFileSync(join(ROOT, 'examples/empathy-ledger/sql/seed-profiles.sql'), 'utf8').replace(/public\.profiles/g, `${s}.profiles`).replace('$1::int', '10');
  await sql(seed);
  const result = await runCli(['drift', '--expect', join(ROOT, 'examples/empathy-ledger/sql/app-expects.sql'), '--schema', s]);
  expect(result.code).toBe(1);
  for (const line of [
    `missing   ${s}.profiles.display_name: column display_name text NOT NULL`,
    `missing   ${s}.profiles.is_elder: column is_elder boolean NOT NULL`,
    `extra     ${s}.profiles.full_name: column full_name text NOT NULL`,
    `extra     ${s}.profiles.elder_status: column elder_status text NOT NULL`,
  ]) expect(result.stdout).toContain(line);
});

describe('drift refuses bad input with exit 2, the problem named, nothing changed', () => {
  test.each([
    ['a statement on a live table', () => file('qualified.sql', 'CREATE TABLE public.drift_probe (id int)'), /creates or changes public\.drift_probe outside the compared schema; write names unqualified/],
    ['a statement that is not schema DDL', () => file('commit.sql', 'CREATE TABLE t (id int); COMMIT;'), /statement 2 \(TransactionStmt\) is not allowed/],
    ['SQL that does not parse', () => file('broken.sql', 'CREATE TABLE (;'), /does not parse/],
    ['JSON that is not an inventory', () => file('wrong.json', '{"format": "something-else", "schemas": []}'), /wrong\.json: format: /],
    ['a file that does not exist', () => join(dir, 'nope.sql'), /--expect: cannot read/],
  ])('%s', async (_label, make, message) => {
    const before = await catalogSnapshot();
    const result = await runCli(['drift', '--expect', make()]);
    expect(result.stderr).toMatch(message);
    expect(result.code).toBe(2);
    expect(await catalogSnapshot()).toBe(before);
  });
});

test('a schema that does not exist: inventory refuses it (exit 2, named); drift reports everything it expects there as missing', async () => {
  const schema = uniqueName('nowhere');
  expect(await runCli(['inventory', '--schema', schema])).toMatchObject({ code: 2, stderr: expect.stringContaining(`--schema: schema ${schema} does not exist in database`) });
  const expectation = join(dir, `${schema}.sql`);
  writeFileSync(expectation, 'CREATE TABLE things (id int PRIMARY KEY);');
  const drift = await runCli(['drift', '--expect', expectation, '--schema', schema]);
  expect(drift.code).toBe(1);
  expect(drift.stdout).toMatch(new RegExp(`missing +${schema}`));
});
