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

/** A signed text read as one JSON object; anything else (not JSON, an array, a scalar) is no statement at all. */
function jsonObject(text: string): Record<string, unknown> | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

/** The decision inside a signed text, if it has the shape of one (the signature is checked separately). */
export function parseDecisionPayload(text: string): DecisionPayload | undefined {
  const d = jsonObject(text);
  if (!d) return undefined;
  const str = (k: string) => typeof d[k] === 'string' && (d[k] as string).length > 0;
  const strOrNull = (k: string) => d[k] === null || typeof d[k] === 'string';
  if (!str('by') || !str('workflowId') || !str('runId') || !str('planHash') || !str('time')) return undefined;
  if (!strOrNull('gate') || !strOrNull('reason')) return undefined;
  if (!(DECISION_ACTIONS as readonly unknown[]).includes(d.action)) return undefined;
  if (Number.isNaN(Date.parse(d.time as string))) return undefined;
  return d as unknown as DecisionPayload;
}

/**
 * What an administrator signs to register (`keys:add`) or revoke (`keys:revoke`) a decider's public key: the exact
 * bytes of the canonical JSON of this object. Its members never overlap a decision's required ones (no `by`,
 * `workflowId`, `runId`, `planHash`) and its actions are not decision actions, so neither can pass for the other.
 */
export interface KeyStatement {
  action: 'keys:add' | 'keys:revoke';
  /** The decider, lower-case (names compare in any letter case). */
  name: string;
  /** The decider's Ed25519 public key, 64 hex digits. */
  publicKey: string;
  /** The administrator who signs, lower-case: their public key must be in the worker's SAFESHIFT_ADMIN_KEYS. */
  admin: string;
  /** ISO time of signing (recorded; a registration does not expire, a revocation ends it). */
  time: string;
}

const KEY_STATEMENT_MEMBERS = ['action', 'admin', 'name', 'publicKey', 'time'];

/** The statement in its one canonical form (names lower-cased). */
export function keyStatementText(s: KeyStatement): string {
  return canonicalJson({ action: s.action, name: s.name.toLowerCase(), publicKey: s.publicKey.toLowerCase(), admin: s.admin.toLowerCase(), time: s.time });
}

export function signKeyStatement(s: KeyStatement, privateKey: string): { statement: string; signature: string } {
  const statement = keyStatementText(s);
  return { statement, signature: bytesToHex(ed25519.sign(utf8ToBytes(statement), hexToBytes(privateKey))) };
}

/** The statement in a signed text, only if the text is exactly its canonical form (no extra member, no other spelling). */
export function parseKeyStatement(text: string): KeyStatement | undefined {
  const s = jsonObject(text);
  if (!s) return undefined;
  if (Object.keys(s).sort().join(',') !== KEY_STATEMENT_MEMBERS.join(',')) return undefined;
  if (s.action !== 'keys:add' && s.action !== 'keys:revoke') return undefined;
  if (typeof s.name !== 'string' || !s.name || typeof s.admin !== 'string' || !s.admin || typeof s.time !== 'string') return undefined;
  if (typeof s.publicKey !== 'string' || !isPublicKey(s.publicKey) || Number.isNaN(Date.parse(s.time))) return undefined;
  const statement = s as unknown as KeyStatement;
  return keyStatementText(statement) === text ? statement : undefined;
}

/** An administrator the worker trusts: a name and an Ed25519 public key (hex), from outside the database. */
export interface AdminKey {
  name: string;
  publicKey: string;
}

export type KeyStatementCheck = { ok: true; statement: KeyStatement } | { ok: false; reason: string };

/**
 * Whether `statement` is a `want.action` of exactly this key for exactly this name, signed by the administrator it
 * names with a key in `admins`. The reasons name people and fingerprints only.
 */
export function verifyKeyStatement(
  statement: string | null, signature: string | null, want: { action: KeyStatement['action']; name: string; publicKey: string }, admins: readonly AdminKey[],
): KeyStatementCheck {
  if (!statement || !signature) return { ok: false, reason: 'not signed by an administrator (written outside `safeshift keys`, or before registrations were signed)' };
  const s = parseKeyStatement(statement);
  if (!s) return { ok: false, reason: 'its signed statement is not a well-formed key statement' };
  if (s.action !== want.action || s.name !== want.name.toLowerCase() || s.publicKey !== want.publicKey.toLowerCase()) {
    return { ok: false, reason: `its signed statement is a ${s.action} of ${keyFingerprint(s.publicKey)} for ${s.name}, not of this key for this name` };
  }
  const keys = admins.filter((a) => sameName(a.name, s.admin));
  if (!keys.length) return { ok: false, reason: `signed by ${s.admin}, who is not an administrator this worker trusts (SAFESHIFT_ADMIN_KEYS)` };
  if (!keys.some((a) => verifySignature(statement, signature, a.publicKey))) return { ok: false, reason: `the signature is not ${s.admin}'s` };
  return { ok: true, statement: s };
}

/** A short, stable name for a public key in messages, listings and audit rows: the first 16 hex digits of its SHA-256. */
export function keyFingerprint(publicKey: string): string {
  return isPublicKey(publicKey) ? bytesToHex(sha256(hexToBytes(publicKey))).slice(0, 16) : 'not-a-key';
}
