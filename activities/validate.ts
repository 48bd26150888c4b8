/**
 * Phase 7, validate: count and checksum of the mapped source projection against the target, read in one
 * snapshot. A mismatch fails the migration before anyone is asked to approve. No compensation: read-only.
 */
import { checksum, sameChecksum } from '../src/checksum';
import { inTransaction } from '../src/db';
import type { ValidationResult } from '../src/messages';
import type { CopySpec } from '../src/projection';
import { displayName } from '../src/sql';
import { heartbeating, withDatabase } from './support';

export interface ValidateInput {
  db: string;
  spec: CopySpec;
}

export async function validateCopy(input: ValidateInput): Promise<ValidationResult> {
  return withDatabase(input, (client) =>
    heartbeating(() =>
      inTransaction(client, async () => {
        const source = await checksum(client, input.spec, 'source');
        const target = await checksum(client, input.spec, 'target');
        const ok = sameChecksum(source, target);
        const message = ok
          ? `${target.rows} rows; checksum of the mapped projection equal on ${displayName(input.spec.source)} and ${displayName(input.spec.target)}`
          : `${displayName(input.spec.source)} maps to ${source.rows} rows (checksum ${source.checksum}) but ${displayName(input.spec.target)} holds ${target.rows} (checksum ${target.checksum})`;
        return { ok, source, target, message };
      }, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY'),
    ),
  );
}
