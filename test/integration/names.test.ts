/**
 * The new table takes the old table's index and constraint names at cutover (applications name them:
 * `ON CONFLICT ON CONSTRAINT <table>_pkey`, error handlers matching a constraint name), and the original table
 * gets them back on rollback.
 */
import { atPhase, basePlan, runCli, sql, statusOf, uniqueName, waitFor, writePlan } from '../support/helpers';

/** Index names, and the names of the constraints that are not indexes, by definition (table names left out). */
async function names(table: string): Promise<{ indexes: string[]; constraints: string[] }> {
  const indexes = await sql<{ name: string }>(
    `SELECT c.relname AS name FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = $1::regclass ORDER BY 1`, [table]);
  const constraints = await sql<{ name: string }>(
    `SELECT conname AS name FROM pg_constraint WHERE conrelid = $1::regclass AND contype IN ('c', 'f') ORDER BY 1`, [table]);
  return { indexes: indexes.map((r) => r.name), constraints: constraints.map((r) => r.name) };
}

async function itemsWithNamedConstraints(t: string): Promise<void> {
  await sql(`CREATE TABLE public.${t}_cat (id int PRIMARY KEY)`);
  await sql(`INSERT INTO public.${t}_cat SELECT generate_series(1, 5)`);
  await sql(`CREATE TABLE public.${t} (id int PRIMARY KEY, sku text NOT NULL UNIQUE, price numeric(8,2) CHECK (price >= 0),
               cat int REFERENCES public.${t}_cat)`);
  await sql(`CREATE INDEX ${t}_by_price ON public.${t} (price)`);
  await sql(`INSERT INTO public.${t} SELECT g, 'sku-' || g, g, 1 + g % 5 FROM generate_series(1, 500) g`);
}

/** The plan's own DDL: PostgreSQL names everything after the new table (<t>_v2_pkey, <t>_v2_sku_key, ...). */
function itemsV2Plan(t: string, extra: Record<string, unknown> = {}): string {
  return writePlan(basePlan(t, `public.${t}`, `public.${t}_v2`, {
    create: `CREATE TABLE public.${t}_v2 (id int PRIMARY KEY, sku text NOT NULL UNIQUE, price numeric(8,2) CHECK (price >= 0),
               cat int REFERENCES public.${t}_cat, note text);
             CREATE INDEX ${t}_v2_by_price ON public.${t}_v2 (price)`,
    ...extra,
  }));
}

async function migrate(rollback: boolean): Promise<void> {
  const t = uniqueName('items');
  await itemsWithNamedConstraints(t);
  const before = await names(`public.${t}`);
  const planName = t.replace(/_/g, '-');
  const plan = itemsV2Plan(t);
  expect((await runCli(['start', plan])).code).toBe(0);
  await waitFor(planName, atPhase('awaiting_cutover'));
  expect((await runCli(['approve', planName, '--as', 'alice'])).code).toBe(0);
  await waitFor(planName, atPhase('awaiting_drop'));
  expect(await names(`public.${t}`)).toEqual(before);
  // What the application does with the names works on the new table.
  await sql(`INSERT INTO public.${t} (id, sku, price) VALUES (1, 'dup', 1) ON CONFLICT ON CONSTRAINT ${t}_pkey DO NOTHING`);
  await expect(sql(`INSERT INTO public.${t} (id, sku, price) VALUES (9001, 'x', -1)`)).rejects.toThrow(`"${t}_price_check"`);
  await expect(sql(`INSERT INTO public.${t} (id, sku, cat) VALUES (9002, 'y', 99)`)).rejects.toThrow(`"${t}_cat_fkey"`);
  // The retired table's indexes are out of the way, under the retired suffix.
  const retired = await names((await statusOf(planName)).retiredTable!);
  expect(retired.indexes.every((n) => /_retired_\d{14}$/.test(n))).toBe(true);
  if (rollback) {
    expect((await runCli(['rollback', planName, '--as', 'carol'])).code).toBe(0);
    await waitFor(planName, atPhase('rolled_back'));
    expect(await names(`public.${t}`)).toEqual(before);
    await sql(`INSERT INTO public.${t} (id, sku, price) VALUES (1, 'dup', 1) ON CONFLICT ON CONSTRAINT ${t}_pkey DO NOTHING`);
  }
}

test('index and constraint names of the old table are the new table\'s after cutover', async () => {
  await migrate(false);
});

test('and the original table has them back after rollback', async () => {
  await migrate(true);
});

describe('names through a column rename (columns: { body: content })', () => {
  /** Index names, and those of the CHECK, foreign-key and NOT NULL constraints. */
  async function allNames(table: string): Promise<{ indexes: string[]; constraints: string[] }> {
    const indexes = await sql<{ name: string }>(
      `SELECT c.relname AS name FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = $1::regclass ORDER BY 1`, [table]);
    const constraints = await sql<{ name: string }>(
      `SELECT conname AS name FROM pg_constraint WHERE conrelid = $1::regclass AND contype IN ('c', 'f', 'n') ORDER BY 1`, [table]);
    return { indexes: indexes.map((r) => r.name), constraints: constraints.map((r) => r.name) };
  }

  test('the renamed column\'s UNIQUE, index and CHECK keep their names after cutover and back after rollback; the gate names the one not kept', async () => {
    const t = uniqueName('posts');
    await sql(`CREATE TABLE public.${t} (id int PRIMARY KEY, content text NOT NULL UNIQUE CHECK (length(content) < 1000), extra text)`);
    await sql(`CREATE INDEX ${t}_by_content ON public.${t} (lower(content)) WHERE content <> ''`);
    await sql(`CREATE INDEX ${t}_by_extra ON public.${t} (extra)`);
    await sql(`INSERT INTO public.${t} SELECT g, 'post ' || g, 'x' FROM generate_series(1, 200) g`);
    const before = await allNames(`public.${t}`);
    const planName = t.replace(/_/g, '-');
    const plan = writePlan(basePlan(t, `public.${t}`, `public.${t}_v2`, {
      create: `CREATE TABLE public.${t}_v2 (id int PRIMARY KEY, body text NOT NULL UNIQUE CHECK (length(body) < 1000), extra text);
               CREATE INDEX ${t}_v2_by_body ON public.${t}_v2 (lower(body)) WHERE body <> ''`,
      columns: { body: 'content' },
      reverse: { content: 'body' },
    }));
    const started = await runCli(['start', plan]);
    expect(started.stderr).toBe('');
    const gate = await waitFor(planName, atPhase('awaiting_cutover'));
    // The index the new table has no counterpart of: its name will not answer on the live table, and the gate says so.
    const shown = gate.warnings.join('\n');
    expect(shown).toMatch(new RegExp(`names: index ${t}_by_extra .*not`));
    expect(shown).not.toMatch(new RegExp(`names: \\w+ ${t}_(content_key|by_content|content_check|pkey)\\b`));
    expect((await runCli(['approve', planName, '--as', 'alice'])).code).toBe(0);
    await waitFor(planName, atPhase('awaiting_drop'));
    const after = await allNames(`public.${t}`);
    expect(after).toEqual({ indexes: before.indexes.filter((n) => n !== `${t}_by_extra`), constraints: before.constraints });
    await sql(`INSERT INTO public.${t} (id, body) VALUES (9001, 'post 1') ON CONFLICT ON CONSTRAINT ${t}_content_key DO NOTHING`);
    await expect(sql(`INSERT INTO public.${t} (id, body) VALUES (9002, repeat('x', 2000))`)).rejects.toThrow(`"${t}_content_check"`);
    expect((await runCli(['rollback', planName, '--as', 'carol'])).code).toBe(0);
    await waitFor(planName, atPhase('rolled_back'));
    expect(await allNames(`public.${t}`)).toEqual(before);
    await sql(`INSERT INTO public.${t} (id, content) VALUES (9001, 'post 1') ON CONFLICT ON CONSTRAINT ${t}_content_key DO NOTHING`);
  });
});

describe('names with a compatibility view (cutover.compatView)', () => {
  // The new table keeps its own name, but the application still writes through the old one: a unique, CHECK or
  // foreign-key violation raised through the view names the new table's constraint, which error handlers match.
  // (ON CONFLICT ON CONSTRAINT through the view is refused by PostgreSQL whatever the names: it looks the
  // constraint up on the view. ON CONFLICT (columns) works through it.)
  test('the new table answers to the old index and constraint names after cutover; the original has them back after rollback', async () => {
    const t = uniqueName('citems');
    await itemsWithNamedConstraints(t);
    const before = await names(`public.${t}`);
    const planName = t.replace(/_/g, '-');
    const plan = itemsV2Plan(t, { cutover: { compatView: true } });
    expect((await runCli(['start', plan])).code).toBe(0);
    await waitFor(planName, atPhase('awaiting_cutover'));
    expect((await runCli(['approve', planName, '--as', 'alice'])).code).toBe(0);
    await waitFor(planName, atPhase('awaiting_drop'));
    expect(await sql(`SELECT relkind::text AS kind FROM pg_class WHERE oid = $1::regclass`, [`public.${t}`])).toEqual([{ kind: 'v' }]);
    expect(await names(`public.${t}_v2`)).toEqual(before);
    // Through the old name, the violations name the constraints the application knew.
    await expect(sql(`INSERT INTO public.${t} (id, sku, price) VALUES (1, 'dup', 1)`)).rejects.toThrow(`"${t}_pkey"`);
    await expect(sql(`INSERT INTO public.${t} (id, sku, price) VALUES (9000, 'sku-2', 1)`)).rejects.toThrow(`"${t}_sku_key"`);
    await expect(sql(`INSERT INTO public.${t} (id, sku, price) VALUES (9001, 'x', -1)`)).rejects.toThrow(`"${t}_price_check"`);
    await sql(`INSERT INTO public.${t} (id, sku, price) VALUES (1, 'dup', 1) ON CONFLICT (id) DO NOTHING`);
    const retired = await names((await statusOf(planName)).retiredTable!);
    expect(retired.indexes.every((n) => /_retired_\d{14}$/.test(n))).toBe(true);
    expect((await runCli(['rollback', planName, '--as', 'carol'])).code).toBe(0);
    await waitFor(planName, atPhase('rolled_back'));
    expect(await names(`public.${t}`)).toEqual(before);
    await sql(`INSERT INTO public.${t} (id, sku, price) VALUES (1, 'dup', 1) ON CONFLICT ON CONSTRAINT ${t}_pkey DO NOTHING`);
  });
});
