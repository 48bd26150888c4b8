/**
 * The plan file (DESIGN.md "Plan file"): strict, every unknown key is an error, every error names its field.
 * The parsed plan is normalised (defaults filled, tables split into schema + name, durations in ms) so that
 * workflows and activities never re-interpret operator text.
 */
import { z } from 'zod';
import { parseIdent, parseTableRef, type TableRef } from '../sql';
import { MAX_GATE_WAIT_MS } from '../messages';
import { parseDuration } from './duration';

const slug = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$/, 'must be a slug: lower-case letters, digits and dashes, 2-63 chars');

const personName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$/, 'must be a person name without spaces');

const envVarName = z
  .string()
  .regex(/^[A-Z_][A-Z0-9_]*$/, 'must be the NAME of an environment variable (e.g. DATABASE_URL), never a URL');

const tableRef = z.string().transform((text, ctx): TableRef => {
  const ref = parseTableRef(text);
  if (!ref) {
    ctx.addIssue({ code: 'custom', message: `"${text}" is not schema.table with identifiers like a_b or "Quoted"` });
    return z.NEVER;
  }
  return ref;
});

const identifier = z.string().transform((text, ctx): string => {
  const name = parseIdent(text);
  if (name === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${text}" is not an identifier (a_b or "Quoted")` });
    return z.NEVER;
  }
  return name;
});

const duration = z.string().transform((text, ctx): number => {
  const ms = parseDuration(text);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${text}" is not a duration like 30s, 15m, 72h or 7d` });
    return z.NEVER;
  }
  return ms;
});

const sqlText = z.string().trim().min(1, 'must not be empty');

/** What a column has that `dropConstraints` can name: `column:NOT NULL`, `column:IDENTITY`, `column:DEFAULT` (from a sequence). */
export const COLUMN_PROPERTIES = ['NOT NULL', 'IDENTITY', 'DEFAULT'] as const;
export type ColumnProperty = (typeof COLUMN_PROPERTIES)[number];
/** A source constraint the operator drops on purpose: by its name, or a column's NOT NULL / identity / sequence default. */
export type DropName = { constraint: string } | { column: string; property: ColumnProperty };

/**
 * `name` (a constraint, a_b or "Quoted") or `column:PROPERTY`. The property is split at the last colon, so a
 * quoted column name may contain one; NOT NULL, IDENTITY and DEFAULT are matched in any case.
 */
const dropName = z.string().transform((text, ctx): DropName => {
  const colon = text.lastIndexOf(':');
  const property = COLUMN_PROPERTIES.find((p) => colon >= 0 && text.slice(colon + 1).trim().replace(/\s+/g, ' ').toUpperCase() === p);
  if (property) {
    const column = parseIdent(text.slice(0, colon).trim());
    if (column !== undefined) return { column, property };
    ctx.addIssue({ code: 'custom', message: `"${text}": "${text.slice(0, colon).trim()}" is not a column name (a_b or "Quoted")` });
    return z.NEVER;
  }
  const constraint = parseIdent(text);
  if (constraint !== undefined) return { constraint };
  ctx.addIssue({ code: 'custom', message: `"${text}" is neither a constraint name (a_b or "Quoted") nor column:NOT NULL, column:IDENTITY or column:DEFAULT` });
  return z.NEVER;
});

/**
 * The longest a gate may wait, and the drop gate's `notBefore` (src/messages.ts): while a gate waits, capture
 * triggers run on every write of the application and change tables grow (before cutover), or reverse capture and
 * the retired table stay (after it).
 */
/** Backup tables are dropped this long after the migration ends (done or rolled back), at most a year. */
export const DEFAULT_BACKUP_RETENTION_MS = 7 * 86_400_000;
export const MAX_BACKUP_RETENTION_MS = 365 * 86_400_000;

const gateWait = duration.refine((ms) => ms <= MAX_GATE_WAIT_MS, 'must be at most 30d: capture triggers and change tables stay while a gate waits');
const gateTimeout = gateWait.refine((ms) => ms >= 1000, 'must be at least 1s');

/** Without a timeout the cutover gate waits the longest allowed, then rolls back (nothing has gone live yet). */
const cutoverGate = z.strictObject({
  approvers: z.array(personName).min(1, 'needs at least one approver'),
  required: z.number().int().min(1).default(1),
  timeout: gateTimeout.default(MAX_GATE_WAIT_MS),
  onTimeout: z.enum(['rollback']).default('rollback'),
});
/**
 * The drop gate also waits for a retention time after cutover (`notBefore`). It waits 30d at most too, but its
 * timeout never rolls back: the application has been using the new table since cutover, and a swap back it did
 * not ask for would break it. Nor does it drop: only an approval drops. So the migration ends `done` with reverse
 * capture removed and the retired table kept, sealed, to be dropped by hand (workflows/frame.ts keepAfterDropTimeout).
 */
const dropGate = cutoverGate.extend({
  timeout: gateTimeout.default(MAX_GATE_WAIT_MS),
  onTimeout: z.literal('keep', { error: 'must be keep: a drop gate that times out keeps the retired table and never rolls back (the application uses the new table since cutover); reject the gate to roll back' })
    .default('keep'),
  notBefore: gateWait.default(0),
});

export const planSchema = z
  .strictObject({
    version: z.literal(1),
    name: slug,
    database: envVarName,
    requestedBy: personName,
    source: tableRef,
    /** Required unless `alter` is given: the copy path's new table. */
    target: tableRef.optional(),
    /**
     * The catalog-only fast path (src/in-place.ts): ALTER TABLE statements on the source (and CREATE INDEX
     * CONCURRENTLY on it) done in place, instead of target/create/columns. Only changes that need no rewrite.
     */
    alter: sqlText.optional(),
    key: z.array(identifier).min(1).optional(),
    create: sqlText.optional(),
    createFile: z.string().min(1).optional(),
    columns: z.record(z.string(), sqlText).default({}),
    /** Source column -> SQL expression over target columns: how writes after cutover flow back on rollback. */
    reverse: z.record(z.string(), sqlText).default({}),
    /**
     * Functions (schema.name, any overload) columns and reverse expressions may call besides pg_catalog's immutable
     * and stable built-ins (src/plan/expressions.ts). Never one that runs SQL or reads relations, files or settings.
     */
    allowFunctions: z.array(tableRef).max(100).default([]),
    /**
     * Row filter: a boolean SQL expression over the source's columns; only matching rows are copied, replayed and
     * validated (splitting a shared table into per-project tables: src/row-filter.ts).
     */
    where: sqlText.optional(),
    /** Source constraints the target DDL leaves out on purpose (preflight refuses any other it lacks). */
    dropConstraints: z.array(dropName).default([]),
    copy: z
      .strictObject({
        /** Rows in the first chunk; later chunks are sized toward chunkTime. */
        chunkRows: z.number().int().min(1).max(10_000_000).default(50_000),
        /** Size chunks so each takes about this long (0s: every chunk has chunkRows rows). */
        chunkTime: duration.default(2_000),
        /** Chunks copied at once, each lane with its own read and write connection. */
        parallel: z.number().int().min(1).max(16).default(1),
        /** auto: binary COPY when every column type has binary I/O, text otherwise; text: always text. */
        format: z.enum(['auto', 'text']).default('auto'),
        maxRowsPerSecond: z.number().int().min(0).default(0),
        /** Back off while any standby lags more than this (0s: never). */
        maxReplicationLag: duration.default(30_000),
        /** One SQL statement; back off while its first value is true or a positive number. */
        throttleQuery: sqlText.optional(),
      })
      .prefault({}),
    backup: z
      .strictObject({
        table: z.boolean().default(true),
        /** How long the backup table is kept after the migration ends (done or rolled back); then it is dropped. */
        retention: duration.refine((ms) => ms <= MAX_BACKUP_RETENTION_MS, 'must be at most 365d').default(DEFAULT_BACKUP_RETENTION_MS),
        export: z.strictObject({ dir: z.string().min(1), encrypt: z.boolean().default(false) }).optional(),
      })
      .prefault({}),
    cutover: z
      .strictObject({
        mode: z.enum(['swap']).default('swap'),
        lockTimeoutMs: z.number().int().min(10).max(600_000).default(2000),
        attempts: z.number().int().min(1).max(100).default(10),
        compatView: z.boolean().default(false),
        /**
         * The new table's name after cutover: `source`, it takes the live name (the target's name was only where it
         * was built); `target`, it keeps its own and the source's name goes (or, with compatView, stays as a view
         * over it). Absent: target with compatView, source otherwise (src/swap.ts keepsOwnName); source with
         * compatView is a contradiction.
         */
        newTableName: z.enum(['source', 'target']).optional(),
      })
      .superRefine((c, ctx) => {
        if (c.compatView && c.newTableName === 'source') {
          ctx.addIssue({ code: 'custom', path: ['newTableName'], message: 'compatView keeps the new table at its own name (the target\'s) and the source\'s name as a view: use target, or compatView: false' });
        }
      })
      .prefault({}),
    approvals: z.strictObject({
      cutover: cutoverGate,
      drop: dropGate,
    }),
  })
  .superRefine((plan, ctx) => {
    if (plan.create !== undefined && plan.createFile !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['createFile'], message: 'give either create or createFile, not both' });
    }
    if (plan.alter !== undefined) {
      const copyFields = { target: plan.target, create: plan.create, createFile: plan.createFile, key: plan.key, where: (plan as { where?: unknown }).where,
        columns: Object.keys(plan.columns).length || undefined, reverse: Object.keys(plan.reverse).length || undefined, dropConstraints: plan.dropConstraints.length || undefined,
        'cutover.compatView': plan.cutover.compatView || undefined, 'cutover.newTableName': plan.cutover.newTableName };
      for (const [field, value] of Object.entries(copyFields)) {
        if (value !== undefined) ctx.addIssue({ code: 'custom', path: ['alter'], message: `an in-place plan (alter) cannot have ${field}, which belongs to the copy path; give one or the other` });
      }
    } else if (plan.target === undefined) {
      ctx.addIssue({ code: 'custom', path: ['target'], message: 'required (the new table), unless the plan gives alter: for a catalog-only change in place' });
    } else if (plan.source.schema === plan.target.schema && plan.source.name === plan.target.name) {
      ctx.addIssue({ code: 'custom', path: ['target'], message: 'must differ from source' });
    }
    for (const field of ['columns', 'reverse'] as const) {
      for (const column of Object.keys(plan[field])) {
        if (parseIdent(column) === undefined) {
          ctx.addIssue({ code: 'custom', path: [field, column], message: `"${column}" is not an identifier` });
        }
      }
    }
    const listed = plan.dropConstraints.map((d) => JSON.stringify(d));
    listed.forEach((d, i) => {
      if (listed.indexOf(d) !== i) ctx.addIssue({ code: 'custom', path: ['dropConstraints', i], message: 'lists a constraint twice' });
    });
    for (const g of ['cutover', 'drop'] as const) {
      const { approvers, required } = plan.approvals[g];
      const eligible = new Set(approvers.filter((a) => a !== plan.requestedBy));
      if (required > eligible.size) {
        ctx.addIssue({
          code: 'custom',
          path: ['approvals', g, 'required'],
          message: `needs ${required} approvals but only ${eligible.size} approver(s) other than requestedBy (${plan.requestedBy})`,
        });
      }
      if (new Set(approvers).size !== approvers.length) {
        ctx.addIssue({ code: 'custom', path: ['approvals', g, 'approvers'], message: 'lists a name twice' });
      }
    }
  });

export type PlanInput = z.input<typeof planSchema>;
type ParsedPlan = z.output<typeof planSchema>;

/**
 * A plan ready to run: `createSql` holds the target DDL (inline or read from createFile), `columns` maps target
 * column (as stored) -> SQL expression over source columns.
 */
export type Plan = Omit<ParsedPlan, 'create' | 'createFile' | 'columns' | 'reverse' | 'target'> & {
  /** The copy path's new table; for an in-place plan (alter), the source itself. */
  target: TableRef;
  createSql?: string;
  createFile?: string;
  columns: Record<string, string>;
  reverse: Record<string, string>;
};
