/** `safeshift inventory` and `safeshift drift`: read-only, they never change the database. */
import { readFileSync } from 'node:fs';
import { withClient } from '../db';
import { compareInventories, expectationFromJson, ExpectationError, inventoryFromSql, type DriftItem, type Expectation } from '../drift';
import { MissingSchemaError, readInventory } from '../inventory';
import { inventoryMarkdown } from '../inventory-markdown';
import { CliError, connectionString, EXIT_FAILED, EXIT_OK } from './exit';

interface DatabaseOption {
  /** Name of the environment variable holding the connection string. */
  database: string;
}

export async function showInventory(opts: DatabaseOption & { json?: boolean; schema?: string[]; exactCounts?: boolean }, print: (line: string) => void): Promise<number> {
  const inventory = await withClient(connectionString(opts.database), (client) =>
    readInventory(client, { schemas: opts.schema, exactCounts: opts.exactCounts }).catch((err: unknown) => {
      if (err instanceof MissingSchemaError) throw new CliError(`--schema: ${err.message}`);
      throw err;
    }), 'safeshift inventory');
  print(opts.json ? JSON.stringify(inventory, null, 2) : inventoryMarkdown(inventory));
  return EXIT_OK;
}

function renderDrift(items: DriftItem[]): string[] {
  if (!items.length) return ['no drift: the live database has what the expectation describes'];
  return [`${items.length} difference(s) between the expectation and the live database:`, ...items.map((d) => `  ${d.kind.padEnd(9)} ${d.object}: ${d.detail}`)];
}

export async function showDrift(opts: DatabaseOption & { expect: string; schema: string; json?: boolean }, print: (line: string) => void): Promise<number> {
  let text: string;
  try {
    text = readFileSync(opts.expect, 'utf8');
  } catch (err) {
    throw new CliError(`--expect: cannot read ${opts.expect}: ${(err as Error).message}`);
  }
  const items = await withClient(connectionString(opts.database), async (client) => {
    let expected: Expectation;
    try {
      expected = /\.json$/i.test(opts.expect) ? expectationFromJson(opts.expect, text) : await inventoryFromSql(client, text, opts.schema, opts.expect);
    } catch (err) {
      if (err instanceof ExpectationError) throw new CliError(err.message);
      throw err;
    }
    // Schemas the expectation has and the database lacks are left out here (none: only the database-wide kinds
    // are read); the comparison reports them missing.
    const present = await client.query<{ name: string }>(`SELECT nspname AS name FROM pg_namespace WHERE nspname = ANY($1::text[])`, [expected.schemas.map((s) => s.name)]);
    return compareInventories(expected, await readInventory(client, { schemas: present.rows.map((r) => r.name) }));
  }, 'safeshift drift');
  if (opts.json) print(JSON.stringify({ drift: items.length > 0, differences: items }, null, 2));
  else renderDrift(items).forEach((l) => print(l));
  return items.length ? EXIT_FAILED : EXIT_OK;
}
