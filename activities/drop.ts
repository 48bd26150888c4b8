/**
 * Phase 12, drop: remove the retired table. The point of no return, so it runs only after the drop gate and
 * only on the very table the migration retired (matched by OID). The backup is kept. No compensation.
 */
import { relationName } from '../src/catalog';
import { fatal } from '../src/errors';
import { forgetInertTriggers } from '../src/inert-triggers';
import { displayName, qualified, type TableRef } from '../src/sql';
import { withDatabase, type MigrationRef } from './support';
import { splitDrop } from './split-cutover';

export interface DropInput extends MigrationRef {
  retired: TableRef;
  sourceOid: number;
}

export async function dropRetired(input: DropInput): Promise<string> {
  return withDatabase(input, async (client) => {
    // A split retired no table: its project's old rows leave the shared table instead.
    const split = await splitDrop(client, input);
    if (split !== undefined) return split;
    const at = await relationName(client, input.sourceOid);
    if (!at) return `${displayName(input.retired)} already dropped`;
    if (at.schema !== input.retired.schema || at.name !== input.retired.name) {
      throw fatal('NotOurs', `the retired table is now ${displayName(at)}, not ${displayName(input.retired)}; not dropped`);
    }
    await client.query(`DROP TABLE ${qualified(input.retired)}`);
    await forgetInertTriggers(client, input.sourceOid);
    return `dropped ${displayName(input.retired)}`;
  });
}
