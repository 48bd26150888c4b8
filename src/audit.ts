/**
 * `safeshift audit verify`: recompute the audit chain (src/audit-log.ts) with the key and say where it breaks.
 *
 * Row by row in seq order: a gap in seq is a missing row; a prev_hash that is not the previous row's hash is a broken
 * link (a row between removed, replaced or moved); a keyed row whose HMAC does not match its content is an edited
 * row; an unkeyed row is a row written (or re-hashed) without the key. The one exception is the old unkeyed chain of
 * a ledger from before the key, and only as far as the operator says it goes (`legacyUntil`, the last unkeyed seq,
 * written down outside the database when the key was introduced): its rows' SHA-256 is checked for consistency and
 * they are counted, not reported, and the first keyed row's MAC covers the last of them (its prev_hash), so the
 * legacy part cannot be re-hashed either. Without it every unkeyed row is a finding: the table alone cannot tell
 * an old ledger from a log whose every row was re-hashed with the old unkeyed formula (`safeshift dev` and a fresh
 * install key their first row). With a migration, its head anchored in the workflow (MigrationStatus.auditHead)
 * must still be in the table with the same MAC: a deleted tail shows there.
 */
import type pg from 'pg';
import { macEquals, rowMac, type AuditKey, type AuditRowContent } from './audit-key';
import { AT_TEXT, type AuditHead } from './audit-log';

export type FindingKind = 'missing' | 'broken-link' | 'edited' | 'unkeyed' | 'unkeyed-after-keyed' | 'unknown-key' | 'anchor-missing' | 'anchor-mismatch';

export interface Finding {
  seq: number;
  kind: FindingKind;
  message: string;
}

/** A row as stored: what its MAC covers (`AuditRowContent`), the MAC, and a key id that old rows lack. */
export interface ChainRow extends Omit<AuditRowContent, 'keyId'> {
  hash: string;
  keyId: string | null;
  /** The old trigger's SHA-256 of the row as it is now, computed by PostgreSQL (only meaningful for unkeyed rows). */
  legacyHash: string;
}

export interface VerifyReport {
  ok: boolean;
  rows: number;
  keyedRows: number;
  /**
   * Rows of the old unkeyed chain (up to `legacyUntil`, the seq the operator gave; 0: none allowed), checked for
   * consistency only. Unkeyed rows past it are findings (kind `unkeyed`), not counted here.
   */
  unkeyed: { rows: number; before: string | null; legacyUntil: number };
  keyIds: string[];
  head: AuditHead | null;
  /** The head compared with: `workflowId` is the migration's, or `export <id>` / `--anchor` for one given with --anchor. */
  anchor?: { workflowId: string; head: AuditHead | null };
  findings: Finding[];
}

/** Findings beyond this many are counted, not listed: one broken row usually drags its neighbours along. */
const MAX_FINDINGS = 50;

export class ChainVerifier {
  private prev: ChainRow | undefined;
  private firstKeyed: ChainRow | undefined;
  private lastUnkeyed: ChainRow | undefined;
  private readonly keyIds = new Set<string>();
  private anchorRow: ChainRow | undefined;
  readonly findings: Finding[] = [];
  findingCount = 0;
  rows = 0;
  keyedRows = 0;
  unkeyedRows = 0;

  private legacyLastSeen = false;

  /** `legacyUntil`: the last seq of the old unkeyed chain, as the operator recorded it; 0 (default): no row may be unkeyed. */
  constructor(private readonly keys: Map<string, AuditKey>, private readonly anchor?: AuditHead | null, private readonly legacyUntil = 0) {}

  private find(seq: number, kind: FindingKind, message: string): void {
    this.findingCount += 1;
    if (this.findings.length < MAX_FINDINGS) this.findings.push({ seq, kind, message });
  }

  push(row: ChainRow): void {
    this.rows += 1;
    const prev = this.prev;
    const expected = (prev?.seq ?? 0) + 1;
    if (row.seq !== expected) {
      const gap = row.seq - 1 === expected ? `row ${expected} is` : `rows ${expected}-${row.seq - 1} are`;
      this.find(expected, 'missing', `${gap} missing (deleted)${prev ? `: row ${row.seq} follows row ${prev.seq}` : ' from the start of the log'}`);
    } else if (row.prevHash !== (prev?.hash ?? null)) {
      this.find(row.seq, 'broken-link', prev
        ? `row ${row.seq} does not follow row ${prev.seq}: its prev_hash is not that row's hash (a row between was removed, replaced or moved)`
        : `row ${row.seq}, the first, names a previous row`);
    }
    if (row.keyId === null) this.pushUnkeyed(row);
    else this.pushKeyed(row);
    if (this.anchor && row.seq === this.anchor.seq) this.anchorRow = row;
    this.prev = row;
  }

  private pushUnkeyed(row: ChainRow): void {
    if (this.firstKeyed) {
      this.find(row.seq, 'unkeyed-after-keyed',
        `row ${row.seq} (${row.action}) has no MAC, yet the chain is keyed since row ${this.firstKeyed.seq}: written or re-hashed without the key`);
      return;
    }
    if (row.seq > this.legacyUntil) {
      this.find(row.seq, 'unkeyed', `row ${row.seq} (${row.action}) has no MAC: written or re-hashed without the key` +
        (this.legacyUntil ? ` (the old unkeyed chain ends at row ${this.legacyUntil}, --legacy-until)` : ' (a ledger from before the key: give the last unkeyed seq with --legacy-until)'));
      return;
    }
    if (row.seq === this.legacyUntil) this.legacyLastSeen = true;
    this.unkeyedRows += 1;
    this.lastUnkeyed = row;
    if (row.legacyHash !== row.hash) this.find(row.seq, 'edited', `row ${row.seq} (${row.action}, unkeyed) does not match its hash: edited`);
  }

  private pushKeyed(row: ChainRow): void {
    this.keyedRows += 1;
    this.firstKeyed ??= row;
    this.keyIds.add(row.keyId!);
    const key = this.keys.get(row.keyId!);
    if (!key) {
      this.find(row.seq, 'unknown-key', `row ${row.seq} was keyed with key ${row.keyId}, which is not among the keys given: cannot check it`);
      return;
    }
    const mac = rowMac(key, { ...row, keyId: row.keyId! });
    if (!macEquals(mac, row.hash)) this.find(row.seq, 'edited', `row ${row.seq} (${row.action}) does not match its MAC: edited, or its MAC replaced`);
  }

  private anchorName = 'the workflow';

  /** `anchorWorkflowId`: whose head the anchor is (a migration's workflow id, `export <id>`, `--anchor`). */
  finish(anchorWorkflowId?: string): VerifyReport {
    if (anchorWorkflowId !== undefined) this.anchorName = anchorWorkflowId;
    if (this.anchor) this.checkAnchor();
    // The legacy part's last row (the one the first keyed row's MAC covers) must be there and still unkeyed.
    if (this.legacyUntil > 0 && !this.legacyLastSeen && !this.findings.some((f) => f.seq === this.legacyUntil)) {
      this.find(this.legacyUntil, 'missing', `row ${this.legacyUntil}, the last of the old unkeyed chain (--legacy-until), is not in the table as an unkeyed row`);
    }
    const findings = [...this.findings].sort((a, b) => a.seq - b.seq);
    if (this.findingCount > findings.length) {
      findings.push({ seq: this.prev?.seq ?? 0, kind: findings[findings.length - 1]!.kind, message: `... ${this.findingCount - findings.length} more findings not listed` });
    }
    const before = this.firstKeyed?.at ?? this.lastUnkeyed?.at ?? null;
    return {
      ok: this.findingCount === 0,
      rows: this.rows,
      keyedRows: this.keyedRows,
      unkeyed: { rows: this.unkeyedRows, before: this.unkeyedRows ? before : null, legacyUntil: this.legacyUntil },
      keyIds: [...this.keyIds],
      head: this.prev ? { seq: this.prev.seq, hash: this.prev.hash } : null,
      ...(anchorWorkflowId !== undefined ? { anchor: { workflowId: anchorWorkflowId, head: this.anchor ?? null } } : {}),
      findings,
    };
  }

  private checkAnchor(): void {
    const a = this.anchor!;
    const row = this.anchorRow;
    if (!row) {
      const last = this.prev?.seq ?? 0;
      this.find(a.seq, 'anchor-missing', `row ${a.seq}, the anchored head (the last row when ${this.anchorName} took it), is not in the table${a.seq > last ? ` (the log ends at row ${last}: its tail was deleted)` : ''}`);
    } else if (!macEquals(row.hash, a.hash)) {
      this.find(a.seq, 'anchor-mismatch', `row ${a.seq} is not the row ${this.anchorName} anchored: its hash differs from the anchored head (the chain was rewritten${row.keyId === null ? ' with the unkeyed formula' : ''})`);
    }
  }
}

/** Rows in seq order, a page at a time, so a long log is checked in bounded memory. */
export async function* readChain(client: pg.Client, keyed = true, pageSize = 5000): AsyncGenerator<ChainRow> {
  let after = 0;
  for (;;) {
    const { rows } = await client.query<Record<string, unknown>>(
      `SELECT seq::text, prev_hash, hash, ${keyed ? 'key_id' : 'NULL::text AS key_id'}, event_key, ${AT_TEXT.replace('%s', 'at')} AS at, workflow_id, run_id, actor, action, phase, details,
              encode(sha256(convert_to(concat_ws('|', seq, coalesce(prev_hash, ''), event_key, extract(epoch FROM at), workflow_id, run_id,
                actor, action, phase, details::text), 'UTF8')), 'hex') AS legacy_hash
         FROM safeshift.audit_log a WHERE a.seq > $1 ORDER BY a.seq LIMIT $2`, [after, pageSize]);
    for (const r of rows) {
      yield {
        seq: Number(r.seq), prevHash: r.prev_hash as string | null, hash: r.hash as string, keyId: r.key_id as string | null,
        eventKey: r.event_key as string, at: r.at as string, workflowId: r.workflow_id as string | null, runId: r.run_id as string | null,
        actor: r.actor as string, action: r.action as string, phase: r.phase as string | null, details: r.details, legacyHash: r.legacy_hash as string,
      };
    }
    if (rows.length < pageSize) return;
    after = Number(rows[rows.length - 1]!.seq);
  }
}

/** Whether this database has an audit log with the key_id column (a ledger from before the keyed chain has none). */
export async function auditLogShape(client: pg.Client): Promise<'none' | 'unkeyed' | 'keyed'> {
  const { rows: [r] } = await client.query<{ table: string | null; keyed: boolean }>(
    `SELECT to_regclass('safeshift.audit_log')::text AS table,
            EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('safeshift.audit_log') AND attname = 'key_id' AND NOT attisdropped) AS keyed`);
  return !r?.table ? 'none' : r.keyed ? 'keyed' : 'unkeyed';
}

export async function verifyAuditLog(
  client: pg.Client, keys: Map<string, AuditKey>, anchor?: { workflowId: string; head: AuditHead | null }, legacyUntil = 0,
): Promise<VerifyReport> {
  const keyed = (await auditLogShape(client)) === 'keyed';
  const verifier = new ChainVerifier(keys, anchor?.head, legacyUntil);
  // One snapshot for every page: rows appended meanwhile are not half seen.
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    for await (const row of readChain(client, keyed)) verifier.push(row);
  } finally {
    await client.query('COMMIT').catch(() => undefined);
  }
  return verifier.finish(anchor?.workflowId);
}
