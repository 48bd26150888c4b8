/**
 * The deciders' public keys, read once when a workflow starts and kept in its history: verification is then
 * deterministic. Only keys whose registration an administrator of this worker signed (SAFESHIFT_ADMIN_KEYS, held
 * here, never in the database) and that are not revoked count; any other row for these people is ignored and
 * returned, named by person and fingerprint, for the workflow to audit (`keys:ignored`) and warn of. No administrator keys: nothing starts.
 */
import { Context } from '@temporalio/activity';
import { requireAdminKeys } from '../src/admin-keys';
import { ensureLedger } from '../src/ledger';
import { trustedKeysFor, type IgnoredKey } from '../src/keys';
import type { ApproverKeys } from '../src/messages';
import { withDatabase } from './support';

/** The keys that count, and the rows ignored: the workflow audits those in its own numbered record. */
export interface DeciderKeys {
  keys: ApproverKeys;
  ignored: IgnoredKey[];
}

export async function readDeciderKeys(input: { db: string; names: string[] }): Promise<DeciderKeys> {
  // Before connecting: a worker without administrators refuses at once, naming the setting (non-retryable).
  const admins = requireAdminKeys();
  return withDatabase(input, async (client) => {
    await ensureLedger(client);
    const { keys, ignored } = await trustedKeysFor(client, input.names, admins);
    for (const k of ignored) Context.current().log.warn(`decider key ignored: ${k.name} ${k.fingerprint}: ${k.reason}`);
    // Not audited here: a row written by the activity would sit outside the workflow's numbered, anchored record.
    return { keys, ignored };
  });
}
