/**
 * A fleet child's gates, settled by the approval of the fleet gate that covers its wave (one approval covers a
 * wave). Why this cannot be forged:
 * - The delegation is believed only when the fleet named in it is this workflow's parent. Temporal records the
 *   parent when a workflow starts a child; a client starting a workflow cannot set it. So only the fleet's own
 *   workflow code can start a migration with a delegation, and a migration started from the CLI or a client with a
 *   `fleet` member in its input refuses it at its first gate (and rolls back).
 * - The fleet holds no key of its own (its history is readable, it could not keep one secret): it forwards the
 *   approvers' own signed decisions, and the child checks each again, against the keys it read when it started:
 *   signed by a registered approver of THIS gate of the child's plan (not its requester), as an approve, for the
 *   fleet's workflow id, the gate covering the child's wave, and the fleet's hash (the template's hash, the
 *   project list and the waves). Age is not checked here: the fleet checked it when it accepted the decision, and
 *   a wave's children start long after (a retry, days after).
 * - Each approver counts once; as many distinct approvers as the child's gate requires, or it is refused.
 */
import * as wf from '@temporalio/workflow';
import { fatal } from '../src/errors';
import { canonicalJson, parseDecisionPayload, sameName, verifySignature } from '../src/identity';
import type { ApproverKeys, GateStatus } from '../src/messages';
import type { FleetDelegation } from '../src/fleet/spec';

export interface DelegatedGate {
  approvers: string[];
  required: number;
}

/** The approvers (as the plan spells them) whose forwarded approvals hold; throws an Error naming why not. */
export function delegatedApprovers(
  fleet: FleetDelegation, parentWorkflowId: string | undefined, gate: DelegatedGate, requestedBy: string, keys: ApproverKeys,
): string[] {
  if (parentWorkflowId !== fleet.workflowId) {
    throw new Error(`the gate is delegated to fleet ${fleet.workflowId}, but this migration was ${parentWorkflowId ? `started by ${parentWorkflowId}` : 'not started by a fleet'}`);
  }
  const names: string[] = [];
  const why: string[] = [];
  for (const signed of fleet.approvals ?? []) {
    const d = typeof signed?.payload === 'string' ? parseDecisionPayload(signed.payload) : undefined;
    if (!d || typeof signed.signature !== 'string' || !/^[0-9a-f]{128}$/.test(signed.signature)) { why.push('an approval is not a signed decision'); continue; }
    if (canonicalJson(JSON.parse(signed.payload)) !== signed.payload) { why.push('an approval is not in canonical form'); continue; }
    if (d.action !== 'approve' || d.workflowId !== fleet.workflowId || d.gate !== fleet.gate || d.planHash !== fleet.planHash) {
      why.push(`${d.by}'s decision is not an approval of gate ${fleet.gate} of ${fleet.workflowId} (plan ${fleet.planHash.slice(0, 12)})`);
      continue;
    }
    const name = gate.approvers.find((a) => sameName(a, d.by));
    if (!name || sameName(d.by, requestedBy)) { why.push(`${d.by} is not an approver of this gate`); continue; }
    const registered = keys[d.by.toLowerCase()] ?? [];
    if (!registered.some((k) => verifySignature(signed.payload, signed.signature, k))) { why.push(`the signature is not ${d.by}'s`); continue; }
    if (!names.some((n) => sameName(n, name))) names.push(name);
  }
  if (names.length < gate.required) {
    throw new Error(`the fleet's approvals of gate ${fleet.gate} hold ${names.length} of the ${gate.required} needed${why.length ? ` (${[...new Set(why)].join('; ')})` : ''}`);
  }
  return names;
}

/**
 * At a child's gate (migration.ts gate()): record the fleet's approvers as the gate's decisions and approve it,
 * audited with where the approval came from; a delegation that does not hold fails the migration (it rolls back).
 */
export async function settleByFleet(
  fleet: FleetDelegation, g: GateStatus, cfg: DelegatedGate, requestedBy: string, keys: ApproverKeys,
  audit: (by: string, details: Record<string, unknown>) => Promise<void>,
): Promise<void> {
  let names: string[];
  try {
    names = delegatedApprovers(fleet, wf.workflowInfo().parent?.workflowId, cfg, requestedBy, keys);
  } catch (err) {
    throw fatal('DelegationRefused', `gate ${g.name}: ${(err as Error).message}`);
  }
  const reason = `approved for the fleet ${fleet.workflowId} at its gate ${fleet.gate}`;
  for (const approver of names) g.decisions.push({ approver, approved: true, reason, at: new Date().toISOString() });
  g.state = 'approved';
  await audit(names.join(', '), { reason, fleet: fleet.workflowId, fleetGate: fleet.gate, fleetPlanHash: fleet.planHash });
}
