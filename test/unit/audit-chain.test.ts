/** The keyed audit chain's verification (src/audit.ts) on rows made here: what each kind of tampering looks like. */
import { createHash } from 'node:crypto';
import { canonicalJson, parseAuditKey, rowMac, type AuditKey } from '../../src/audit-key';
import { ChainVerifier, type ChainRow } from '../../src/audit';

const key = parseAuditKey('11'.repeat(32), 'test');
const other = parseAuditKey('22'.repeat(32), 'test');
const keys = new Map([[key.id, key]]);

/** The old trigger's formula, for rows of the unkeyed chain (PostgreSQL computes it in readChain). */
function legacy(r: Omit<ChainRow, 'legacyHash' | 'hash'>): string {
  return createHash('sha256').update([r.seq, r.prevHash ?? '', r.eventKey, r.action].join('|')).digest('hex');
}

function chain(n: number, opts: { unkeyed?: number; with?: AuditKey } = {}): ChainRow[] {
  const rows: ChainRow[] = [];
  for (let seq = 1; seq <= n; seq++) {
    const unkeyed = seq <= (opts.unkeyed ?? 0);
    const base = {
      seq, prevHash: rows[rows.length - 1]?.hash ?? null, eventKey: `run/${seq}`, at: `2026-11-30T10:00:0${seq % 10}.000001Z`,
      workflowId: 'migration-x', runId: 'run', actor: 'safeshift', action: `phase:${seq}`, phase: 'copy', details: { b: [1, 'two'], a: seq },
      keyId: unkeyed ? null : (opts.with ?? key).id,
    };
    const hash = unkeyed ? legacy(base) : rowMac(opts.with ?? key, { ...base, keyId: base.keyId! });
    rows.push({ ...base, hash, legacyHash: unkeyed ? hash : 'n/a' });
  }
  return rows;
}

function verify(rows: ChainRow[], anchor?: { seq: number; hash: string } | null, k = keys, legacyUntil = 0) {
  const v = new ChainVerifier(k, anchor, legacyUntil);
  for (const r of rows) v.push(r);
  return v.finish(anchor === undefined ? undefined : 'migration-x');
}

test('an intact keyed chain is ok, and matches its anchor', () => {
  const rows = chain(5);
  expect(verify(rows)).toMatchObject({ ok: true, rows: 5, keyedRows: 5, unkeyed: { rows: 0, before: null }, findings: [] });
  expect(verify(rows, { seq: 5, hash: rows[4]!.hash }).ok).toBe(true);
});

test('details are covered whatever their key order (jsonb keeps its own)', () => {
  expect(canonicalJson({ b: 1, a: { d: [2, { y: 1, x: 0 }], c: null } })).toBe('{"a":{"c":null,"d":[2,{"x":0,"y":1}]},"b":1}');
  const rows = chain(3);
  rows[1]!.details = { a: 2, b: [1, 'two'] };
  expect(verify(rows).ok).toBe(true);
});

test('an edited row: its MAC no longer matches', () => {
  const rows = chain(5);
  rows[2]!.actor = 'mallory';
  expect(verify(rows).findings).toEqual([expect.objectContaining({ seq: 3, kind: 'edited' })]);
});

test('a deleted row: a gap in seq', () => {
  const rows = chain(5);
  rows.splice(2, 1);
  expect(verify(rows).findings[0]).toMatchObject({ seq: 3, kind: 'missing' });
  expect(verify(chain(5).slice(2)).findings[0]).toMatchObject({ seq: 1, kind: 'missing', message: expect.stringMatching(/rows 1-2 are missing/) });
});

test('rows moved: the link to the previous row breaks', () => {
  const rows = chain(5);
  [rows[1], rows[2]] = [{ ...rows[2]!, seq: 2 }, { ...rows[1]!, seq: 3 }];
  expect(verify(rows).findings.map((f) => f.kind)).toContain('broken-link');
  expect(verify(rows).ok).toBe(false);
});

test('unkeyed rows are findings unless within the legacy part the operator names (--legacy-until)', () => {
  const rows = chain(5, { unkeyed: 2 });
  // Without --legacy-until the table alone cannot tell an old ledger from a downgraded one: both are findings.
  expect(verify(rows).findings).toEqual([expect.objectContaining({ seq: 1, kind: 'unkeyed' }), expect.objectContaining({ seq: 2, kind: 'unkeyed' })]);
  expect(verify(rows, undefined, keys, 2)).toMatchObject({ ok: true, keyedRows: 3, unkeyed: { rows: 2, before: rows[2]!.at, legacyUntil: 2 } });
  // Given too short: the rest of the unkeyed rows are findings.
  expect(verify(rows, undefined, keys, 1).findings).toEqual([expect.objectContaining({ seq: 2, kind: 'unkeyed', message: expect.stringMatching(/ends at row 1/) })]);
  // Given too long: the keyed rows are fine, the missing last legacy row is a finding (its unkeyed row is not there).
  expect(verify(rows, undefined, keys, 3).findings).toEqual([expect.objectContaining({ seq: 3, kind: 'missing' })]);
  // The legacy part re-hashed (its last row's hash changed): the first keyed row's MAC covers the old link.
  const rehashed = chain(5, { unkeyed: 2 });
  rehashed[0]!.actor = 'mallory';
  rehashed[0]!.hash = rehashed[0]!.legacyHash = legacy(rehashed[0]!) + '0';
  rehashed[1]!.prevHash = rehashed[0]!.hash;
  rehashed[1]!.hash = rehashed[1]!.legacyHash = legacy(rehashed[1]!);
  expect(verify(rehashed, undefined, keys, 2).findings).toEqual([expect.objectContaining({ seq: 3, kind: 'broken-link' })]);
  const downgraded = chain(5);
  const row = downgraded[3]!;
  row.keyId = null;
  row.hash = row.legacyHash = legacy(row);
  downgraded[4]!.prevHash = row.hash;
  expect(verify(downgraded).findings[0]).toMatchObject({ seq: 4, kind: 'unkeyed-after-keyed' });
});

test('an edited row of the legacy part: its SHA-256 does not match', () => {
  const rows = chain(3, { unkeyed: 3 });
  rows[1]!.legacyHash = 'recomputed-over-edited-content';
  expect(verify(rows, undefined, keys, 3).findings).toEqual([expect.objectContaining({ seq: 2, kind: 'edited' })]);
});

test('rows of a key not given cannot be checked: a finding, not a pass', () => {
  expect(verify(chain(2, { with: other })).findings.map((f) => f.kind)).toEqual(['unknown-key', 'unknown-key']);
  expect(verify(chain(2, { with: other }), undefined, new Map([[key.id, key], [other.id, other]])).ok).toBe(true);
});

test('the anchored head: a deleted tail and a rewritten chain show there', () => {
  const rows = chain(5);
  const anchor = { seq: 5, hash: rows[4]!.hash };
  expect(verify(rows.slice(0, 3), anchor).findings).toEqual([expect.objectContaining({ seq: 5, kind: 'anchor-missing', message: expect.stringMatching(/tail was deleted/) })]);
  // A chain re-hashed whole with the old unkeyed formula: every row unkeyed, and the anchor no longer matches.
  const rewritten = chain(5, { unkeyed: 5 });
  expect(verify(rewritten).findings.map((f) => f.kind)).toEqual(['unkeyed', 'unkeyed', 'unkeyed', 'unkeyed', 'unkeyed']);
  expect(verify(rewritten, anchor, keys, 5).findings).toEqual([expect.objectContaining({ seq: 5, kind: 'anchor-mismatch' })]);
});

test('a key shorter than 32 bytes is refused without echoing it', () => {
  expect(() => parseAuditKey('abcd', 'SAFESHIFT_AUDIT_KEY')).toThrow(/SAFESHIFT_AUDIT_KEY: the audit key must be at least 32 bytes/);
});
