/**
 * Phase 7, validate: count and checksum of the mapped source projection against the target, read in one
 * snapshot. The application keeps writing, so keys with captured changes not yet replayed at that snapshot are
 * left out on both sides (every other key must be equal: its changes were all replayed). A mismatch fails the
 * migration before anyone is asked to approve. No compensation: read-only.
 */
import { changeTable } from '../src/capture';
import { checksum, sameChecksum } from '../src/checksum';
import { inTransaction } from '../src/db';
import type { ValidationResult } from '../src/messages';
import type { CopySpec } from '../src/projection';
import { displayName, qualified } from '../src/sql';
import { heartbeating, withDatabase } from './support';

export interface ValidateInput {
  db: string;
  spec: CopySpec;
  sourceOid: number;
}

export async function validateCopy(input: ValidateInput): Promise<ValidationResult> {
  const inFlight = changeTable(input.sourceOid);
  return withDatabase(input, (client) =>
    heartbeating(() =>
      inTransaction(client, async () => {
        const { rows } = await client.query<{ n: string }>(`SELECT count(DISTINCT key)::text AS n FROM ${qualified(inFlight)}`);
        const inFlightKeys = Number(rows[0]!.n);
        const source = await checksum(client, input.spec, 'source', null, null, inFlight);
        const target = await checksum(client, input.spec, 'target', null, null, inFlight);
        const ok = sameChecksum(source, target);
        const excluded = inFlightKeys ? ` (${inFlightKeys} keys with changes in flight left out; replayed before cutover)` : '';
        const message = ok
          ? `${target.rows} rows; checksum of the mapped projection equal on ${displayName(input.spec.source)} and ${displayName(input.spec.target)}${excluded}`
          : `${displayName(input.spec.source)} maps to ${source.rows} rows (checksum ${source.checksum}) but ${displayName(input.spec.target)} holds ${target.rows} (checksum ${target.checksum})${excluded}`;
        return { ok, source, target, inFlightKeys, message };
      }, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY'),
    ),
  );
}
