/**
 * The deciders' public keys, read once when a workflow starts and kept in its history: verification is then
 * deterministic. Only keys whose registration an administrator of this worker signed (SAFESHIFT_ADMIN_KEYS, held
 * here, never in the database) and that are not revoked count; any other row for these people is ignored, with a
 * warning and an audit row naming the person and the key's fingerprint. No administrator keys: nothing starts.
 */
import { Context } from '@temporalio/activity';
import { requireAdminKeys } from '../src/admin-keys';
import { appendAudit, ensureLedger } from '../src/ledger';
import { trustedKeysFor } from '../src/keys';
import type { ApproverKeys } from '../src/messages';
import { withDatabase } from './support';

export async function readDeciderKeys(input: { db: string; names: string[] }): Promise<ApproverKeys> {
  // Before connecting: a worker without administrators refuses at once, naming the setting (non-retryable).
  const admins = requireAdminKeys();
  return withDatabase(input, async (client) => {
    await ensureLedger(client);
    const { keys, ignored } = await trustedKeysFor(client, input.names, admins);
    if (ignored.length) {
      const { workflowId, runId } = Context.current().info.workflowExecution ?? { workflowId: 'unknown', runId: 'unknown' };
      for (const k of ignored) {
        Context.current().log.warn(`decider key ignored: ${k.name} ${k.fingerprint}: ${k.reason}`, { workflowId });
        // One row per key and run: a retried activity writes it once.
        await appendAudit(client, {
          eventKey: `keys:ignored:${runId}:${k.name}:${k.fingerprint}`, workflowId, runId, actor: 'safeshift', action: 'keys:ignored',
          details: { name: k.name, fingerprint: k.fingerprint, reason: k.reason },
        });
      }
    }
    return keys;
  });
}
