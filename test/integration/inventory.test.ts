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

/**
 * Every kind issue 12 (finding 5) found missing: types, functions and procedures, an extension, roles and
 * memberships, default privileges, partitions (bounds, foreign keys), a materialized view's index.
 */
async function kindsSchema(): Promise<string> {
  const s = uniqueName('kinds');
  await sql(`CREATE SCHEMA ${s}`);
  await sql(`CREATE ROLE ${s}_admin NOLOGIN CREATEROLE BYPASSRLS`);
  await sql(`CREATE ROLE ${s}_app LOGIN PASSWORD 'never-printed-secret'`);
  await sql(`GRANT ${s}_admin TO ${s}_app WITH ADMIN OPTION`);
  await sql(`ALTER DEFAULT PRIVILEGES IN SCHEMA ${s} GRANT SELECT ON TABLES TO ${s}_app`);
  await sql(`CREATE TYPE ${s}.mood AS ENUM ('sad', 'ok', 'happy')`);
  await sql(`ALTER TYPE ${s}.mood ADD VALUE 'meh' BEFORE 'ok'`);
  await sql(`CREATE DOMAIN ${s}.handle AS text NOT NULL DEFAULT 'anon' CONSTRAINT handle_shape CHECK (VALUE ~ '^[a-z]+$')`);
  await sql(`CREATE TYPE ${s}.point2 AS (x double precision, y double precision)`);
  await sql(`CREATE FUNCTION ${s}.greet(who ${s}.handle, times integer DEFAULT 1) RETURNS text LANGUAGE sql STABLE SECURITY DEFINER
               SET search_path = '' AS $$ SELECT repeat(who, times) $$`);
  await sql(`CREATE PROCEDURE ${s}.tidy() LANGUAGE plpgsql AS $$ BEGIN NULL; END $$`);
  // Its type and functions land in the schema too; they are the extension's, documented by the extension.
  await sql(`CREATE EXTENSION citext SCHEMA ${s}`);
  await sql(`CREATE TABLE ${s}.accounts (id int PRIMARY KEY, name ${s}.citext)`);
  await sql(`CREATE TABLE ${s}.events (id int, account_id int NOT NULL REFERENCES ${s}.accounts, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)`);
  await sql(`CREATE TABLE ${s}.events_2024 PARTITION OF ${s}.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')`);
  await sql(`CREATE TABLE ${s}.events_2025 PARTITION OF ${s}.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')`);
  await sql(`CREATE TABLE ${s}.events_other PARTITION OF ${s}.events DEFAULT`);
  // A foreign key to the partitioned table: PostgreSQL clones it on the referencing table once per partition.
  await sql(`CREATE TABLE ${s}.notes (id int PRIMARY KEY, event_id int, at date, FOREIGN KEY (event_id, at) REFERENCES ${s}.events)`);
  await sql(`CREATE MATERIALIZED VIEW ${s}.per_account AS SELECT account_id, count(*) AS n FROM ${s}.events GROUP BY account_id`);
  await sql(`CREATE UNIQUE INDEX per_account_key ON ${s}.per_account (account_id)`);
  await sql(`INSERT INTO ${s}.accounts VALUES (1, 'a'), (2, 'b')`);
  await sql(`INSERT INTO ${s}.events VALUES (1, 1, '2024-03-01'), (2, 1, '2025-03-01'), (3, 2, '2025-04-01'), (4, 2, '2030-01-01')`);
  // As autovacuum does: the partitions are analyzed, the partitioned parent never.
  for (const p of ['events_2024', 'events_2025', 'events_other']) await sql(`ANALYZE ${s}.${p}`);
  return s;
}

test('inventory lists types (enum labels, domain checks, composites), functions and procedures, extensions, roles, default privileges and partitions, identically on two runs', async () => {
  const s = await kindsSchema();
  const first = await runCli(['inventory', '--json', '--schema', s]);
  const second = await runCli(['inventory', '--json', '--schema', s]);
  expect(first).toMatchObject({ code: 0, stderr: '' });
  expect(second.stdout).toBe(first.stdout);
  expect(first.stdout).not.toContain('never-printed-secret');
  expect(first.stdout).not.toContain('SCRAM-SHA-256');
  const inv = JSON.parse(first.stdout) as Inventory;
  const schema = inv.schemas[0]!;

  // Types: the extension's citext is not listed here, it belongs to the extension.
  expect(schema.types.map((t) => [t.name, t.kind])).toEqual([['handle', 'domain'], ['mood', 'enum'], ['point2', 'composite']]);
  expect(schema.types[0]).toMatchObject({ baseType: 'text', default: `'anon'::text`, notNull: true, checks: [{ name: 'handle_shape', definition: `CHECK (VALUE ~ '^[a-z]+$'::text)` }] });
  expect(schema.types[1]).toMatchObject({ labels: ['sad', 'meh', 'ok', 'happy'] });
  expect(schema.types[2]).toMatchObject({ fields: [{ name: 'x', type: 'double precision', collation: null }, { name: 'y', type: 'double precision', collation: null }] });

  expect(schema.functions.map((f) => [f.name, f.kind])).toEqual([['greet', 'function'], ['tidy', 'procedure']]);
  expect(schema.functions[0]).toMatchObject({
    signature: `who ${s}.handle, times integer`, arguments: `who ${s}.handle, times integer DEFAULT 1`, result: 'text', language: 'sql',
    volatility: 'stable', strict: false, securityDefiner: true, config: ['search_path=""'],
  });
  expect(schema.functions[0]!.bodySha256).toMatch(/^[0-9a-f]{64}$/);
  expect(schema.functions[1]).toMatchObject({ signature: '', result: null, language: 'plpgsql', securityDefiner: false });

  expect(inv.extensions).toContainEqual({ name: 'citext', version: expect.any(String), schema: s });
  expect(inv.roles.find((r) => r.name === `${s}_app`)).toEqual({
    name: `${s}_app`, login: true, superuser: false, createRole: false, createDb: false, replication: false, bypassRls: false, inherit: true,
    connectionLimit: -1, memberOf: [{ role: `${s}_admin`, admin: true, inherit: true, set: true }],
  });
  expect(inv.roles.find((r) => r.name === `${s}_admin`)).toMatchObject({ login: false, createRole: true, bypassRls: true, memberOf: [] });
  expect(inv.defaultPrivileges).toContainEqual({ role: expect.any(String), schema: s, objects: 'tables', grants: [{ grantee: `${s}_app`, privileges: ['SELECT'] }] });

  // Partitions: the parent's key and partitions with their bounds; rows and sizes summed over the tree.
  expect(schema.tables.map((t) => t.name)).toEqual(['accounts', 'events', 'events_2024', 'events_2025', 'events_other', 'notes']);
  const events = schema.tables.find((t) => t.name === 'events')!;
  expect(events).toMatchObject({
    kind: 'partitioned table', partitionOf: null, measuredOver: 'partition tree', rows: { estimate: 4 },
    partitioning: { key: 'RANGE (at)', partitions: [
      { name: `${s}.events_2024`, bound: `FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')` },
      { name: `${s}.events_2025`, bound: `FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')` },
      { name: `${s}.events_other`, bound: 'DEFAULT' },
    ] },
  });
  expect(events.bytes.total).toBeGreaterThan(0);
  const fk = `FOREIGN KEY (account_id) REFERENCES ${s}.accounts(id)`;
  const p2024 = schema.tables.find((t) => t.name === 'events_2024')!;
  expect(p2024).toMatchObject({ kind: 'table', partitioning: null, measuredOver: 'table', rows: { estimate: 1 },
    partitionOf: { parent: `${s}.events`, bound: `FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')` } });
  expect(p2024.constraints).toContainEqual({ name: 'events_account_id_fkey', type: 'foreign key', definition: fk, inherited: true });
  expect(events.constraints).toContainEqual({ name: 'events_account_id_fkey', type: 'foreign key', definition: fk, inherited: false });
  // The clones PostgreSQL keeps for a foreign key to a partitioned table are its own bookkeeping, not listed.
  expect(schema.tables.find((t) => t.name === 'notes')!.constraints.filter((c) => c.type === 'foreign key').map((c) => c.definition))
    .toEqual([`FOREIGN KEY (event_id, at) REFERENCES ${s}.events(id, at)`]);
  const matview = schema.views.find((v) => v.name === 'per_account')!;
  expect(matview.indexes.map((i) => i.name)).toEqual(['per_account_key']);
  expect(matview.materialized).toMatchObject({ populated: true });

  const md = await runCli(['inventory', '--schema', s]);
  expect(md.code).toBe(0);
  const section = (title: string) => md.stdout.slice(md.stdout.indexOf(title), md.stdout.indexOf('\n### ', md.stdout.indexOf(title) + 1));
  expect(section(`### Partitioned table \`${s}.events\``)).toMatch(/partitioned by `RANGE \(at\)`/);
  expect(section(`### Partitioned table \`${s}.events\``)).toContain('about 4 rows');
  expect(section(`### Partitioned table \`${s}.events\``)).not.toContain('never analyzed');
  expect(md.stdout).toContain(`- \`${s}.events_other\`: DEFAULT`);
  expect(md.stdout).toContain(`Partition of \`${s}.events\` FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')`);
  expect(md.stdout).toContain(`enum: 'sad', 'meh', 'ok', 'happy'`);
  expect(md.stdout).toContain(`\`handle_shape\`: \`CHECK (VALUE ~ '^[a-z]+$'::text)\``);
  expect(md.stdout).toContain(`\`${s}.greet(who ${s}.handle, times integer)\``);
  expect(md.stdout).toMatch(new RegExp(`\\| citext \\| [0-9.]+ \\| ${s} \\|`));
  expect(md.stdout).toMatch(new RegExp(`\\| ${s}_app \\| login \\|.*${s}_admin \\(admin\\)`));
  expect(md.stdout).not.toContain('never-printed-secret');
});

/** A partitioned table with a foreign key on the parent and one declared on a partition only (as pagila does). */
const partitionedDdl = (users: string) => `
  CREATE TABLE accounts (id int PRIMARY KEY, user_id int REFERENCES ${users} (id));
  CREATE TABLE events (id int, account_id int NOT NULL REFERENCES accounts, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
  CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
  CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
  ALTER TABLE events_2025 ADD CONSTRAINT events_2025_account_fkey FOREIGN KEY (account_id) REFERENCES accounts ON DELETE CASCADE;
  CREATE TABLE notes (id int PRIMARY KEY, event_id int, at date, FOREIGN KEY (event_id, at) REFERENCES events);`;

test('drift reports a dropped partition foreign key, against an inventory and against SQL', async () => {
  const s = uniqueName('part');
  // Outside the compared schema, as Supabase's auth.users is for public.profiles.
  const users = `${uniqueName('auth')}.users`;
  await sql(`CREATE SCHEMA ${users.split('.')[0]}`);
  await sql(`CREATE TABLE ${users} (id int PRIMARY KEY)`);
  await sql(`CREATE SCHEMA ${s}`);
  await sql(`SET search_path = ${s}; ${partitionedDdl(users)}`);
  const expectsSql = file(`${s}.sql`, partitionedDdl(users));
  const snapshot = await runCli(['inventory', '--json', '--schema', s]);
  const expectsJson = file(`${s}.json`, snapshot.stdout);
  for (const expectation of [expectsSql, expectsJson]) {
    expect(await runCli(['drift', '--expect', expectation, '--schema', s])).toEqual({ code: 0, stderr: '', stdout: 'no drift: the live database has what the expectation describes\n' });
  }

  await sql(`ALTER TABLE ${s}.events DROP CONSTRAINT events_account_id_fkey`);
  await sql(`ALTER TABLE ${s}.events_2025 DROP CONSTRAINT events_2025_account_fkey`);
  const fk = `constraint foreign key FOREIGN KEY (account_id) REFERENCES ${s}.accounts(id)`;
  for (const expectation of [expectsSql, expectsJson]) {
    const result = await runCli(['drift', '--expect', expectation, '--schema', s, '--json']);
    expect(result).toMatchObject({ code: 1, stderr: '' });
    const { differences } = JSON.parse(result.stdout) as { differences: { object: string; kind: string; detail: string }[] };
    expect(differences.map((d) => `${d.kind} ${d.object}: ${d.detail}`).sort()).toEqual([
      `missing ${s}.events: ${fk}`,
      `missing ${s}.events_2024: ${fk}`,
      `missing ${s}.events_2025: ${fk}`,
      `missing ${s}.events_2025: ${fk} ON DELETE CASCADE`,
    ]);
  }
});

test('drift from SQL: a foreign key to a table outside the compared schema is read; creating or changing anything outside it is refused', async () => {
  const other = uniqueName('outside');
  await sql(`CREATE SCHEMA ${other}`);
  await sql(`CREATE TABLE ${other}.users (id int PRIMARY KEY)`);
  await sql(`CREATE TABLE ${other}.parted (id int) PARTITION BY LIST (id)`);
  const s = uniqueName('refs');
  await sql(`CREATE SCHEMA ${s}`);
  // Nothing references users yet: the expectation's foreign key is the first, and sets its relhastriggers.
  await sql(`CREATE TABLE ${s}.profiles (id int PRIMARY KEY)`);
  const before = await catalogSnapshot();
  const ahead = await runCli(['drift', '--expect', file(`${s}-ahead.sql`, `CREATE TABLE profiles (id int PRIMARY KEY REFERENCES ${other}.users);`), '--schema', s]);
  expect(ahead).toMatchObject({ code: 1, stderr: '' });
  expect(ahead.stdout).toContain(`missing   ${s}.profiles: constraint foreign key FOREIGN KEY (id) REFERENCES ${other}.users(id)`);
  for (const [statement, named] of [
    [`GRANT SELECT ON ${other}.users TO PUBLIC`, `${other}.users`],
    [`ALTER TABLE ${other}.users ADD COLUMN nickname text`, `${other}.users`],
    [`CREATE TABLE parted_1 PARTITION OF ${other}.parted FOR VALUES IN (1)`, `${other}.parted`],
    [`CREATE TYPE ${other}.mood AS ENUM ('ok')`, `type ${other}.mood`],
    [`CREATE FUNCTION ${other}.f() RETURNS int LANGUAGE sql AS 'SELECT 1'`, `function ${other}.f()`],
  ]) {
    const result = await runCli(['drift', '--expect', file(`${s}-bad.sql`, `CREATE TABLE profiles (id int PRIMARY KEY); ${statement};`), '--schema', s]);
    expect(result.stderr).toContain(`creates or changes ${named} outside the compared schema`);
    expect(result.code).toBe(2);
  }
  expect(await catalogSnapshot()).toBe(before);
});

test('drift compares types, functions and, against an inventory JSON only, extensions, roles and default privileges', async () => {
  const s = uniqueName('kdrift');
  await sql(`CREATE SCHEMA ${s}`);
  await sql(`CREATE ROLE ${s}_owner NOLOGIN`);
  await sql(`CREATE ROLE ${s}_app LOGIN`);
  await sql(`GRANT ${s}_owner TO ${s}_app`);
  await sql(`ALTER DEFAULT PRIVILEGES IN SCHEMA ${s} GRANT SELECT ON TABLES TO ${s}_app`);
  // Its types and functions in the schema are the extension's: neither listed nor compared one by one.
  await sql(`CREATE EXTENSION isn SCHEMA ${s}`);
  const ddl = `
    CREATE TYPE mood AS ENUM ('sad', 'ok');
    CREATE DOMAIN handle AS text CONSTRAINT handle_shape CHECK (VALUE ~ '^[a-z]+$');
    CREATE FUNCTION greet(who handle) RETURNS text LANGUAGE sql STABLE SET search_path = '' AS $$ SELECT 'hi ' || who $$;`;
  await sql(`SET search_path = ${s}; ${ddl}`);
  const expectsSql = file(`${s}.sql`, ddl);
  const expectsJson = file(`${s}.json`, (await runCli(['inventory', '--json', '--schema', s])).stdout);
  for (const expectation of [expectsSql, expectsJson]) {
    expect(await runCli(['drift', '--expect', expectation, '--schema', s])).toMatchObject({ code: 0, stderr: '' });
  }

  await sql(`ALTER TYPE ${s}.mood ADD VALUE 'happy'`);
  await sql(`ALTER DOMAIN ${s}.handle DROP CONSTRAINT handle_shape`);
  await sql(`CREATE OR REPLACE FUNCTION ${s}.greet(who ${s}.handle) RETURNS text LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$ SELECT 'hello ' || who $$`);
  await sql(`DROP EXTENSION isn`);
  await sql(`ALTER ROLE ${s}_app NOLOGIN`);
  await sql(`REVOKE ${s}_owner FROM ${s}_app`);
  await sql(`ALTER DEFAULT PRIVILEGES IN SCHEMA ${s} REVOKE SELECT ON TABLES FROM ${s}_app`);
  const inSchema = [
    `different ${s}.handle: domain checks [], expected [CHECK (VALUE ~ '^[a-z]+$'::text)]`,
    `different ${s}.mood: enum labels ['sad', 'ok', 'happy'], expected ['sad', 'ok']`,
    `different ${s}.greet(who ${s}.handle): security definer true, expected false; body differs`,
  ];
  const found = async (expectation: string) => {
    const result = await runCli(['drift', '--expect', expectation, '--schema', s, '--json']);
    expect(result).toMatchObject({ code: 1, stderr: '' });
    return (JSON.parse(result.stdout) as { differences: { object: string; kind: string; detail: string }[] }).differences.map((d) => `${d.kind} ${d.object}: ${d.detail}`);
  };
  // A SQL file describes one schema: nothing database-wide is compared.
  expect(await found(expectsSql)).toEqual(inSchema);
  expect(await found(expectsJson)).toEqual([
    ...inSchema,
    expect.stringMatching(new RegExp(`^missing extension isn: extension isn [0-9.]+ in ${s}$`)),
    `different role ${s}_app: login false, expected true`,
    `missing role ${s}_app: member of ${s}_owner`,
    expect.stringMatching(new RegExp(`^missing default privileges of \\S+ on tables in ${s}: ${s}_app: SELECT$`)),
  ]);
});
