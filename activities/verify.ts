/**
 * Phase 10, verify: the live name resolves to the new table (with `cutover.compatView`: the new table is at its
 * own name and the live name is the compatibility view over it) and it answers a read. No checksum here: from the
 * moment the swap commits, the application writes to the new table; what was moved was checked under the
 * cutover lock (swapTables) before the commit.
 */
import { isCompatViewOver } from '../src/bound-objects';
import { relationName, tableOid } from '../src/catalog';
import { fatal } from '../src/errors';
import { columnRenames, type CopySpec } from '../src/projection';
import { readAccess } from '../src/access-matrix';
import { accessChangedSinceRecord } from '../src/access-record';
import { displayName, qualified } from '../src/sql';
import { accessAs, keepsOwnName, newTableHome, renamesAway } from '../src/swap';
import { withDatabase } from './support';
import { verifySplit } from './split-cutover';

export interface VerifyInput {
  db: string;
  spec: CopySpec;
  targetOid: number;
  compatView?: boolean;
  /** `cutover.newTableName` (absent in runs started before it). */
  newTableName?: 'source' | 'target';
  /**
   * From the cutover (SwapResult.accessChanged): access through the live name the swap changed. Absent after a retry
   * past the commit: then the live access is compared here with the matrix the cutover recorded before the swap.
   */
  accessChanged?: string[];
}

export async function verifyCutover(input: VerifyInput): Promise<string> {
  if (input.spec.where !== undefined) return verifySplit(input);
  const { spec } = input;
  return withDatabase(input, async (client) => {
    const home = newTableHome(spec, keepsOwnName(input));
    const at = await relationName(client, input.targetOid);
    if (!at || at.schema !== home.schema || at.name !== home.name) {
      throw fatal('ValidationMismatch', `after cutover ${displayName(home)} is not the new table`);
    }
    if (input.compatView && !(await isCompatViewOver(client, spec.source, input.targetOid))) {
      throw fatal('ValidationMismatch', `after cutover ${displayName(spec.source)} is not the compatibility view over ${displayName(home)}`);
    }
    if (renamesAway(input) && (await tableOid(client, spec.source))) {
      throw fatal('ValidationMismatch', `after cutover ${displayName(spec.source)} still exists; with cutover.newTableName: target it is gone`);
    }
    // Everyone's access through the live name is what it was: anything else rolls the migration back.
    const accessChanged = input.accessChanged ?? await accessChangedSinceRecord(client, spec.source, input.targetOid, async (objects) => (renamesAway(input)
      ? accessAs(await readAccess(client, home, objects), home, spec.source) : readAccess(client, spec.source, objects)), input.compatView ? {} : columnRenames(spec.columns));
    if (accessChanged.length) {
      throw fatal('ValidationMismatch', `after cutover access through ${displayName(spec.source)} is not what it was: ${accessChanged.join('; ')}`);
    }
    // Through the live name: with a compatibility view this reads the view, which is what old code will do.
    const { rows } = await client.query<{ estimate: number }>(
      `SELECT (SELECT count(*) FROM (SELECT 1 FROM ${qualified(renamesAway(input) ? home : spec.source)} LIMIT 1) one)::int AS estimate`);
    const what = input.compatView ? `${displayName(home)} is the new table, ${displayName(spec.source)} its compatibility view,`
      : renamesAway(input) ? `${displayName(home)} is the new table under its own name, ${displayName(spec.source)} is gone,` : `${displayName(spec.source)} is the new table`;
    return `${what} and answers reads (${rows[0]!.estimate ? 'has rows' : 'empty'})`;
  });
}
