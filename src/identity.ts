/**
 * Who decides, and on what: signed decisions and the plan hash. Imported by workflow code, so pure JavaScript
 * only (no Node, no I/O): Ed25519 and SHA-256 come from @noble/curves and @noble/hashes, which run unchanged in
 * Temporal's workflow sandbox, so the workflow verifies a signature deterministically (same answer on replay).
 */
import { ed25519 } from '@noble/curves/ed25519';
import { sha256 } from '@noble/hashes/sha2';
import { bytesToHex, hexToBytes, utf8ToBytes } from '@noble/hashes/utils';

/** Everything a person can decide on a running workflow. */
const DECISION_ACTIONS = ['approve', 'reject', 'abort', 'rollback', 'pause', 'resume', 'retry'] as const;
export type DecisionAction = (typeof DECISION_ACTIONS)[number];

/** What the CLI signs: the exact bytes of `payload` (canonical JSON of this object). */
export interface DecisionPayload {
  /** The signer, as registered (`safeshift keys add`); compared case-insensitively. */
  by: string;
  workflowId: string;
  runId: string;
  /** The gate meant (approve, reject); null for the operator actions. */
  gate: string | null;
  action: DecisionAction;
  /** The hash the workflow computed of the plan it runs (`safeshift show <id> --plan`). */
  planHash: string;
  reason: string | null;
  /** ISO time of signing; refused when older than DECISION_MAX_AGE_MS by workflow time. */
  time: string;
}

/** A decision as sent to the workflow: the signed text and its signature (hex). */
export interface SignedDecision {
  payload: string;
  signature: string;
}

/** A signed decision is good for this long after it was signed (workflow time), and never from the future beyond the skew. */
export const DECISION_MAX_AGE_MS = 10 * 60_000;
export const DECISION_MAX_SKEW_MS = 2 * 60_000;

/**
 * JSON with object keys sorted at every level and no whitespace: the same value always gives the same text,
 * whoever serialises it. `undefined` members are left out, as JSON.stringify does.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    const text = JSON.stringify(value);
    return text === undefined ? 'null' : text;
  }
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  const entries = Object.keys(value).sort()
    .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
    .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`);
  return `{${entries.join(',')}}`;
}

export function sha256Hex(text: string): string {
  return bytesToHex(sha256(utf8ToBytes(text)));
}

/**
 * The hash a migration's decisions are bound to: SHA-256 of the canonical JSON of the normalised plan the
 * workflow runs, which holds the target DDL text (createSql) and every column and reverse expression. The
 * workflow computes it itself; a hash given by the client is never trusted.
 */
export function planHashOf(plan: unknown): string {
  return sha256Hex(canonicalJson(plan));
}

/** A new key pair, hex. Node's or the browser's crypto.getRandomValues supplies the randomness (CLI only). */
export function generateKeyPair(): { privateKey: string; publicKey: string } {
  const secret = ed25519.utils.randomSecretKey();
  return { privateKey: bytesToHex(secret), publicKey: bytesToHex(ed25519.getPublicKey(secret)) };
}

export function publicKeyOf(privateKey: string): string {
  return bytesToHex(ed25519.getPublicKey(hexToBytes(privateKey)));
}

export function isPublicKey(text: string): boolean {
  return /^[0-9a-f]{64}$/.test(text);
}

export function signDecision(payload: DecisionPayload, privateKey: string): SignedDecision {
  const text = canonicalJson(payload);
  return { payload: text, signature: bytesToHex(ed25519.sign(utf8ToBytes(text), hexToBytes(privateKey))) };
}

export function verifySignature(text: string, signature: string, publicKey: string): boolean {
  try {
    return ed25519.verify(hexToBytes(signature), utf8ToBytes(text), hexToBytes(publicKey));
  } catch {
    return false;
  }
}

/** A name as compared: `Alice`, `alice` and `ALICE` are one person. */
export function sameName(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}

/** The decision inside a signed text, if it has the shape of one (the signature is checked separately). */
export function parseDecisionPayload(text: string): DecisionPayload | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const d = v as Record<string, unknown>;
  const str = (k: string) => typeof d[k] === 'string' && (d[k] as string).length > 0;
  const strOrNull = (k: string) => d[k] === null || typeof d[k] === 'string';
  if (!str('by') || !str('workflowId') || !str('runId') || !str('planHash') || !str('time')) return undefined;
  if (!strOrNull('gate') || !strOrNull('reason')) return undefined;
  if (!(DECISION_ACTIONS as readonly unknown[]).includes(d.action)) return undefined;
  if (Number.isNaN(Date.parse(d.time as string))) return undefined;
  return d as unknown as DecisionPayload;
}
