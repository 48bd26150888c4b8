/** Phase 10, verify: the live name now resolves to the new table and it holds what was validated. */
import { checksum, sameChecksum, type Checksum } from '../src/checksum';
import { relationName } from '../src/catalog';
import { fatal } from '../src/errors';
import type { CopySpec } from '../src/projection';
import { displayName } from '../src/sql';
import { heartbeating, withDatabase } from './support';

export interface VerifyInput {
  db: string;
  spec: CopySpec;
  targetOid: number;
  expected: Checksum;
}

export async function verifyCutover(input: VerifyInput): Promise<string> {
  const { spec } = input;
  return withDatabase(input, (client) =>
    heartbeating(async () => {
      const at = await relationName(client, input.targetOid);
      if (!at || at.schema !== spec.source.schema || at.name !== spec.source.name) {
        throw fatal('ValidationMismatch', `after cutover ${displayName(spec.source)} is not the new table`);
      }
      const now = await checksum(client, { ...spec, target: spec.source }, 'target');
      if (!sameChecksum(now, input.expected)) {
        throw fatal('ValidationMismatch', `the live ${displayName(spec.source)} holds ${now.rows} rows (checksum ${now.checksum}), validated ${input.expected.rows} (${input.expected.checksum})`);
      }
      return `${displayName(spec.source)} is the new table with ${now.rows} rows, as validated`;
    }),
  );
}
