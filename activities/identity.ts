/** The deciders' public keys, read once when a workflow starts and kept in its history: verification is then deterministic. */
import { ensureLedger } from '../src/ledger';
import { keysFor } from '../src/keys';
import type { ApproverKeys } from '../src/messages';
import { withDatabase } from './support';

export async function readDeciderKeys(input: { db: string; names: string[] }): Promise<ApproverKeys> {
  return withDatabase(input, async (client) => {
    await ensureLedger(client);
    return keysFor(client, input.names);
  });
}
