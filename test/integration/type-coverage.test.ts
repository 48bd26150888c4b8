/**
 * Every built-in type family round-trips exactly through the copy, compared value by value (each column's text
 * output, and equality where the type has it), with a composite key of uuid and text chunked a few rows at a time.
 */
import { atPhase, basePlan, runCli, sql, uniqueName, waitFor, writePlan } from '../support/helpers';

const COLUMNS: [name: string, type: string, values: string[]][] = [
  ['small', 'smallint', ['-32768', '32767', '0']],
  ['big', 'bigint', ['-9223372036854775808', '9223372036854775807']],
  ['num', 'numeric', [`'${'9'.repeat(120)}.${'1'.repeat(80)}'`, `'NaN'`, `'Infinity'`, `'-Infinity'`, `'-0.000000000000000000001'`]],
  ['num_scaled', 'numeric(12,4)', ['12345678.1234', '-0.0001']],
  ['f4', 'real', [`'NaN'`, `'Infinity'`, `'-Infinity'`, `'-0'`, `'1.4e-45'`, `'3.4028235e38'`, `'0.1'`]],
  ['f8', 'double precision', [`'NaN'`, `'-Infinity'`, `'5e-324'`, `'1.7976931348623157e308'`, `'0.1'`, `'-0'`]],
  ['ts', 'timestamp', [`'infinity'`, `'-infinity'`, `'4713-01-01 00:00:00 BC'`, `'294276-12-31 23:59:59.999999'`, `'2000-02-29 12:34:56.789012'`]],
  ['tstz', 'timestamptz', [`'infinity'`, `'1000-01-01 00:00:00+05:30 BC'`, `'2026-03-29 01:30:00+01'`]],
  ['d', 'date', [`'infinity'`, `'4713-01-01 BC'`, `'5874897-12-31'`]],
  ['tm', 'time', [`'24:00:00'`, `'00:00:00.000001'`]],
  ['tmtz', 'timetz', [`'23:59:59.999999-15:59'`]],
  ['iv', 'interval', [`'-178000000 years'`, `'1 mon -2 days 03:04:05.678901'`, `'infinity'`]],
  ['b', 'bytea', [`'\\x00ff0000'::bytea`, `''::bytea`, `decode(repeat('00', 3000), 'hex')`]],
  ['t', 'text', [`E'tab\\there\\nnew line\\r\\n back\\\\slash \\\\N quote'' "dq" ☃ 𝄞 \\u00e9'`, `''`, `'\\N'`, `E'\\\\.'`]],
  ['vc', 'varchar(20)', [`'exactly twenty chars'`]],
  ['ch', 'char(5)', [`'ab'`]],
  ['cha', 'char(3)[]', [`ARRAY['ab', 'c', NULL]`]],
  ['js', 'json', [`'{"b": 1,   "a": [1, 2.50, "x"], "a": null}'`, `'"\\u0000-escaped"'`]],
  ['jsb', 'jsonb', [`'{"nested": {"deep": [1, {"x": "ü"}]}, "n": 1.000}'`, `'null'`]],
  ['ia', 'int[]', [`'{{1,NULL,3},{4,5,6}}'`, `'{}'`, `'[0:1]={7,8}'`]],
  ['ta', 'text[]', [`ARRAY['NULL', NULL, 'a,b', E'q"uote', E'back\\\\slash', '']`]],
  ['mood', 'mood', [`'happy'`, `'ok ok'`]],
  ['dom', 'positive_text', [`'fine'`]],
  ['r', 'int4range', [`'[1,10)'`, `'empty'`, `'(,5]'`]],
  ['tr', 'tstzrange', [`'[2020-01-01, infinity)'`]],
  ['mr', 'int4multirange', [`'{[1,3), [5,7)}'`]],
  ['ip', 'inet', [`'192.168.0.1/24'`, `'::ffff:1.2.3.4'`]],
  ['net', 'cidr', [`'10.0.0.0/8'`, `'2001:db8::/32'`]],
  ['mac', 'macaddr', [`'08:00:2b:01:02:03'`]],
  ['mac8', 'macaddr8', [`'08:00:2b:01:02:03:04:05'`]],
  ['u', 'uuid', [`'00000000-0000-0000-0000-000000000000'`, `'ffffffff-ffff-ffff-ffff-ffffffffffff'`]],
  ['bits', 'bit varying', [`B'1010001'`, `B''`]],
  ['flag', 'boolean', ['true', 'false']],
  ['tsv', 'tsvector', [`'a fat:1A cat:2B,3C'`]],
  ['pt', 'point', [`'(1.5,-2.25)'`]],
  ['oidcol', 'oid', ['4294967295']],
  ['"Upper Case"', 'text', [`'quoted identifier'`]],
  ['"select"', 'int', ['1']],
  ['"with space"', 'text', [`'x'`]],
];

test.each([['auto', 'binary'], ['text', 'text']] as const)('every type family, NULLs, TOASTed tens of MB, quoted identifiers, generated and identity columns copy exactly (copy.format %s: %s COPY)', async (format, used) => {
  const t = uniqueName(`types_${format}`);
  await sql(`DO $$ BEGIN CREATE TYPE mood AS ENUM ('happy', 'ok ok'); EXCEPTION WHEN duplicate_object THEN NULL; END $$`);
  await sql(`DO $$ BEGIN CREATE DOMAIN positive_text AS text CHECK (VALUE <> ''); EXCEPTION WHEN duplicate_object THEN NULL; END $$`);
  await sql(`CREATE TABLE public.${t} (tenant uuid NOT NULL, slug text NOT NULL, seq int GENERATED ALWAYS AS IDENTITY,
    ${COLUMNS.map(([name, type]) => `${name} ${type}`).join(', ')},
    slug_len int GENERATED ALWAYS AS (length(slug)) STORED,
    PRIMARY KEY (tenant, slug))`);
  // One row per value of the longest list (shorter lists repeat), keys spread over several tenants and odd slugs.
  const rows = Math.max(...COLUMNS.map(([, , v]) => v.length));
  for (let i = 0; i < rows; i++) {
    const values = COLUMNS.map(([, type, v]) => `(${v[i % v.length]})::${type}`);
    await sql(`INSERT INTO public.${t} (tenant, slug, ${COLUMNS.map(([n]) => n).join(', ')})
               VALUES ('${i % 3}0000000-0000-0000-0000-000000000000', E'slug ${i} \\\\ ''q'' ☃', ${values.join(', ')})`);
  }
  // NULL in every column but the key; and one TOASTed value of 24 MB (text) and 12 MB (bytea).
  await sql(`INSERT INTO public.${t} (tenant, slug) VALUES ('10000000-0000-0000-0000-000000000000', 'all null')`);
  await sql(`INSERT INTO public.${t} (tenant, slug, t, b) VALUES ('20000000-0000-0000-0000-000000000000', 'big',
               repeat(md5('x'), 24 * 1024 * 1024 / 32), decode(repeat('00ff', 6 * 1024 * 1024), 'hex'))`);

  const planName = t.replace(/_/g, '-');
  expect(await runCli(['start', writePlan(basePlan(t, `public.${t}`, `public.${t}_v2`, { copy: { chunkRows: 3, chunkTime: '0s', format } }))])).toMatchObject({ code: 0, stderr: '' });
  const s = await waitFor(planName, atPhase('awaiting_cutover'));
  expect(s.validation?.ok).toBe(true);
  expect(s.copy.format).toBe(used);
  expect(s.copy.chunks).toBeGreaterThanOrEqual(3);

  // Value by value: every column's text output, and `=` where the type has one, row by row joined on the key.
  const all = ['seq', ...COLUMNS.map(([n]) => n), 'slug_len'];
  const [counts] = await sql<{ source: number; target: number; joined: number }>(
    `SELECT (SELECT count(*)::int FROM public.${t}) AS source, (SELECT count(*)::int FROM public.${t}_v2) AS target,
            (SELECT count(*)::int FROM public.${t} s JOIN public.${t}_v2 d USING (tenant, slug)) AS joined`);
  expect(counts).toEqual({ source: rows + 2, target: rows + 2, joined: rows + 2 });
  const differing = await sql<{ column: string; n: number }>(
    all.map((c) => `SELECT '${c.replace(/'/g, "''")}' AS column, count(*)::int AS n FROM public.${t} s JOIN public.${t}_v2 d USING (tenant, slug)
                     WHERE s.${c}::text IS DISTINCT FROM d.${c}::text`).join(' UNION ALL '));
  expect(differing.filter((d) => d.n > 0)).toEqual([]);
  const equalityTypes = COLUMNS.filter(([, type]) => !['json', 'point'].includes(type)).map(([n]) => n);
  const unequal = await sql<{ column: string; n: number }>(
    equalityTypes.map((c) => `SELECT '${c.replace(/'/g, "''")}' AS column, count(*)::int AS n FROM public.${t} s JOIN public.${t}_v2 d USING (tenant, slug)
                                WHERE s.${c} IS DISTINCT FROM d.${c}`).join(' UNION ALL '));
  expect(unequal.filter((d) => d.n > 0)).toEqual([]);
  const [big] = await sql<{ t: number; b: number }>(`SELECT length(t) AS t, length(b) AS b FROM public.${t}_v2 WHERE slug = 'big'`);
  expect(big).toEqual({ t: 24 * 1024 * 1024, b: 12 * 1024 * 1024 });

  expect((await runCli(['approve', planName, '--as', 'alice'])).code).toBe(0);
  // The drop gate opens only after cutover and verify: approving before that is refused (GateNotOpen).
  await waitFor(planName, atPhase('awaiting_drop'));
  expect((await runCli(['approve', planName, '--as', 'alice', '--gate', 'drop'])).code).toBe(0);
  await waitFor(planName, atPhase('done'));
  // Identity carried, and its sequence moved past the max: the next insert does not collide.
  const [next] = await sql<{ seq: number }>(`INSERT INTO public.${t} (tenant, slug) VALUES ('30000000-0000-0000-0000-000000000000', 'after') RETURNING seq`);
  expect(next!.seq).toBeGreaterThan(rows + 2);
});

test('a uuid key chunks and copies exactly', async () => {
  const t = uniqueName('uuids');
  await sql(`CREATE TABLE public.${t} (id uuid PRIMARY KEY, n int)`);
  await sql(`INSERT INTO public.${t} SELECT md5(g::text)::uuid, g FROM generate_series(1, 2000) g`);
  const planName = t.replace(/_/g, '-');
  expect((await runCli(['start', writePlan(basePlan(t, `public.${t}`, `public.${t}_v2`, { copy: { chunkRows: 97, chunkTime: '0s' } }))])).code).toBe(0);
  const s = await waitFor(planName, atPhase('awaiting_cutover'));
  expect(s.copy.chunks).toBe(Math.ceil(2000 / 97));
  expect(s.copy.chunkRows).toBe(97); // chunkTime 0s: not tuned
  expect(await sql(`SELECT count(*)::int AS n FROM public.${t} s FULL JOIN public.${t}_v2 d USING (id) WHERE s.n IS DISTINCT FROM d.n`)).toEqual([{ n: 0 }]);
  expect((await runCli(['abort', planName])).code).toBe(0);
  await waitFor(planName, atPhase('rolled_back'));
});

test('a text key (mixed case, accents, spaces, a non-default collation) chunks in 3 lanes and copies exactly', async () => {
  const t = uniqueName('textkey');
  // The C collation orders 'B' before 'a' and 'é' after 'z'; ranges cut in that order must delete and copy in it.
  await sql(`CREATE TABLE public.${t} (k text COLLATE "C" PRIMARY KEY, n int)`);
  await sql(`INSERT INTO public.${t} SELECT (ARRAY['a', 'B', 'é', ' sp', 'z''q'])[1 + g % 5] || g, g FROM generate_series(1, 1800) g`);
  const planName = t.replace(/_/g, '-');
  expect((await runCli(['start', writePlan(basePlan(t, `public.${t}`, `public.${t}_v2`, { copy: { chunkRows: 50, chunkTime: '0s', parallel: 3 } }))])).code).toBe(0);
  const s = await waitFor(planName, atPhase('awaiting_cutover'));
  // 36 full chunks, and the one open upwards from the last key (empty here; it catches rows added meanwhile).
  expect(s.copy).toMatchObject({ chunks: 37, rowsCopied: 1800, parallel: 3 });
  expect(await sql(`SELECT count(*)::int AS n FROM public.${t} s FULL JOIN public.${t}_v2 d USING (k) WHERE s.n IS DISTINCT FROM d.n`)).toEqual([{ n: 0 }]);
  // Every chunk recorded, each starting where the one before it ended.
  const chunks = await sql<{ lo: string[] | null; hi: string[] | null; rows: number }>(
    `SELECT c.lo, c.hi, c.rows::int FROM safeshift.copy_chunks c JOIN safeshift.migrations m USING (run_id) WHERE m.name = $1 ORDER BY c.seq`, [planName]);
  expect(chunks).toHaveLength(37);
  expect(chunks[36]).toMatchObject({ hi: null, rows: 0 });
  chunks.forEach((c, i) => expect(c.lo).toEqual(i === 0 ? null : chunks[i - 1]!.hi));
  expect(chunks.reduce((n, c) => n + c.rows, 0)).toBe(1800);
  expect((await runCli(['abort', planName])).code).toBe(0);
  await waitFor(planName, atPhase('rolled_back'));
});

test('a table without a primary key is chunked by its unique NOT NULL key (composite text + int)', async () => {
  const t = uniqueName('nopk');
  await sql(`CREATE TABLE public.${t} (region text NOT NULL, n int NOT NULL, note text, UNIQUE (region, n))`);
  await sql(`INSERT INTO public.${t} SELECT (ARRAY['eu', 'us', 'Ω'])[1 + g % 3], g, 'note ' || g FROM generate_series(1, 1500) g`);
  const planName = t.replace(/_/g, '-');
  expect((await runCli(['start', writePlan(basePlan(t, `public.${t}`, `public.${t}_v2`, { copy: { chunkRows: 101, chunkTime: '0s' } }))])).code).toBe(0);
  const s = await waitFor(planName, atPhase('awaiting_cutover'));
  expect(s.copy.chunks).toBe(Math.ceil(1500 / 101));
  expect(await sql(`SELECT count(*)::int AS n FROM public.${t} s FULL JOIN public.${t}_v2 d USING (region, n) WHERE s.note IS DISTINCT FROM d.note`)).toEqual([{ n: 0 }]);
  expect((await runCli(['abort', planName])).code).toBe(0);
  await waitFor(planName, atPhase('rolled_back'));
});

test('a column type without binary I/O makes the copy use text, and its values still copy exactly', async () => {
  const t = uniqueName('textonly');
  // A base type with text input/output functions only (no RECEIVE / SEND), as some extension types are.
  await sql(`CREATE TYPE public.${t}_label`);
  await sql(`CREATE FUNCTION public.${t}_in(cstring) RETURNS public.${t}_label LANGUAGE internal IMMUTABLE STRICT AS 'textin'`);
  await sql(`CREATE FUNCTION public.${t}_out(public.${t}_label) RETURNS cstring LANGUAGE internal IMMUTABLE STRICT AS 'textout'`);
  await sql(`CREATE TYPE public.${t}_label (INPUT = public.${t}_in, OUTPUT = public.${t}_out, LIKE = text)`);
  await sql(`CREATE CAST (text AS public.${t}_label) WITH INOUT AS ASSIGNMENT`);
  await sql(`CREATE CAST (public.${t}_label AS text) WITH INOUT`);
  await sql(`CREATE TABLE public.${t} (id int PRIMARY KEY, label public.${t}_label, labels public.${t}_label[])`);
  await sql(`INSERT INTO public.${t} SELECT g, E'label \\t' || g, ARRAY[('x' || g)::public.${t}_label, NULL] FROM generate_series(1, 50) g`);
  const planName = t.replace(/_/g, '-');
  expect((await runCli(['start', writePlan(basePlan(t, `public.${t}`, `public.${t}_v2`))])).code).toBe(0);
  const s = await waitFor(planName, atPhase('awaiting_cutover'));
  expect(s.copy.format).toBe('text');
  expect(s.validation?.ok).toBe(true);
  expect(await sql(`SELECT count(*)::int AS n FROM public.${t} s FULL JOIN public.${t}_v2 d USING (id)
                     WHERE s.label::text IS DISTINCT FROM d.label::text OR s.labels::text IS DISTINCT FROM d.labels::text`)).toEqual([{ n: 0 }]);
  expect((await runCli(['abort', planName])).code).toBe(0);
  await waitFor(planName, atPhase('rolled_back'));
});
