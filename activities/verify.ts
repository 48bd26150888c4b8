/**
 * Phase 10, verify: the live name resolves to the new table and it answers a read. No checksum here: from the
 * moment the swap commits, the application writes to the new table; what was moved was checked under the
 * cutover lock (swapTables) before the commit.
 */
import { relationName } from '../src/catalog';
import { fatal } from '../src/errors';
import type { CopySpec } from '../src/projection';
import { displayName, qualified } from '../src/sql';
import { withDatabase } from './support';

export interface VerifyInput {
  db: string;
  spec: CopySpec;
  targetOid: number;
}

export async function verifyCutover(input: VerifyInput): Promise<string> {
  const { spec } = input;
  return withDatabase(input, async (client) => {
    const at = await relationName(client, input.targetOid);
    if (!at || at.schema !== spec.source.schema || at.name !== spec.source.name) {
      throw fatal('ValidationMismatch', `after cutover ${displayName(spec.source)} is not the new table`);
    }
    const { rows } = await client.query<{ estimate: number }>(
      `SELECT (SELECT count(*) FROM (SELECT 1 FROM ${qualified(spec.source)} LIMIT 1) one)::int AS estimate`);
    return `${displayName(spec.source)} is the new table and answers reads (${rows[0]!.estimate ? 'has rows' : 'empty'})`;
  });
}
