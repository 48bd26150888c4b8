/**
 * Limits a plan cannot lift (issue 13, finding 9): gates wait at most 30 days, backup tables are kept for a bounded
 * retention, and the throttle query is a plain SELECT by PostgreSQL's own parser.
 */
import { MAX_GATE_WAIT_MS } from '../../src/messages';
import { DEFAULT_BACKUP_RETENTION_MS, planSchema } from '../../src/plan/schema';
import { throttleQueryProblems } from '../../src/throttle';
import { BULK_LIMITS, DEFAULT_LIMITS, copyConnections } from '../../src/db';
import { restoreRequest } from '../../src/cli/backup';
import { CliError, EXIT_BAD_INPUT } from '../../src/cli/exit';
import { restoreGateProblem } from '../../src/messages';

const base = {
  version: 1, name: 'limits', database: 'DATABASE_URL', requestedBy: 'carol', source: 'public.t', target: 'public.t_v2',
  approvals: { cutover: { approvers: ['alice'] }, drop: { approvers: ['alice'] } },
};

function issues(plan: Record<string, unknown>): string[] {
  const r = planSchema.safeParse(plan);
  return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
}

const DAY = 86_400_000;

describe('gates wait at most 30 days', () => {
  test.each([
    ['cutover timeout', { cutover: { approvers: ['alice'], timeout: '36500d' }, drop: { approvers: ['alice'] } }, 'approvals.cutover.timeout'],
    ['drop timeout', { cutover: { approvers: ['alice'] }, drop: { approvers: ['alice'], timeout: '31d' } }, 'approvals.drop.timeout'],
    ['drop notBefore', { cutover: { approvers: ['alice'] }, drop: { approvers: ['alice'], notBefore: '8760h' } }, 'approvals.drop.notBefore'],
  ])('a %s above 30d is refused, the field named', (_label, approvals, field) => {
    expect(issues({ ...base, approvals })).toEqual([`${field}: must be at most 30d: capture triggers and change tables stay while a gate waits`]);
  });

  test('30d is allowed; a gate without a timeout waits 30d at most (the drop gate too: its timeout keeps, never rolls back)', () => {
    const plan = planSchema.parse({ ...base, approvals: { cutover: { approvers: ['alice'] }, drop: { approvers: ['alice'], timeout: '30d', notBefore: '30d' } } });
    expect(plan.approvals.drop.timeout).toBe(30 * DAY);
    expect(MAX_GATE_WAIT_MS).toBe(30 * DAY);
    expect(planSchema.parse(base).approvals.cutover.timeout).toBe(MAX_GATE_WAIT_MS);
    expect(planSchema.parse(base).approvals.drop.timeout).toBe(MAX_GATE_WAIT_MS);
    expect(planSchema.parse(base).approvals.drop.onTimeout).toBe('keep');
    // A shorter one is the plan's to give (tests use seconds); under 1s is refused.
    expect(planSchema.parse({ ...base, approvals: { cutover: { approvers: ['alice'] }, drop: { approvers: ['alice'], timeout: '3s' } } }).approvals.drop.timeout).toBe(3000);
    expect(issues({ ...base, approvals: { cutover: { approvers: ['alice'] }, drop: { approvers: ['alice'], timeout: '0s' } } })).toEqual(['approvals.drop.timeout: must be at least 1s']);
  });

  test('the drop gate never rolls back on its own: onTimeout rollback is refused, naming the field', () => {
    expect(issues({ ...base, approvals: { cutover: { approvers: ['alice'] }, drop: { approvers: ['alice'], onTimeout: 'rollback' } } })).toEqual([
      'approvals.drop.onTimeout: must be keep: a drop gate that times out keeps the retired table and never rolls back (the application uses the new table since cutover); reject the gate to roll back',
    ]);
  });
});

describe('restore waits at most 30 days at its gate', () => {
  const opts = { overLive: true, approvers: 'bob', required: '1', lockTimeoutMs: '2000', database: 'DATABASE_URL' };
  test.each([
    ['31d', '--gate-timeout: 31d is more than 30d: the staged table would wait beside the live one for longer than any gate may'],
    ['36500d', '--gate-timeout: 36500d is more than 30d: the staged table would wait beside the live one for longer than any gate may'],
    ['0s', '--gate-timeout: "0s" is not a duration like 24h'],
  ])('--gate-timeout %s is refused (exit 2), the flag named', (gateTimeout, message) => {
    let caught: unknown;
    try {
      restoreRequest({ ...opts, gateTimeout }, 'alice');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(CliError);
    expect((caught as CliError).message).toBe(message);
    expect((caught as CliError).exitCode).toBe(EXIT_BAD_INPUT);
  });

  test('30d and less are taken', () => {
    expect(restoreRequest({ ...opts, gateTimeout: '30d' }, 'alice').overLive?.gateTimeoutMs).toBe(MAX_GATE_WAIT_MS);
    expect(restoreRequest({ ...opts, gateTimeout: '24h' }, 'alice').overLive?.gateTimeoutMs).toBe(86_400_000);
  });

  test('the workflow refuses an input beyond 30d too (a client that skips the CLI)', () => {
    expect(restoreGateProblem(MAX_GATE_WAIT_MS + 1)).toBe('overLive.gateTimeoutMs: 2592000001 ms is more than 30d, the longest a gate may wait');
    expect(restoreGateProblem(500)).toBe('overLive.gateTimeoutMs: 500 ms is less than 1s');
    expect(restoreGateProblem(Number.NaN)).toBe('overLive.gateTimeoutMs: NaN ms is not a whole number of milliseconds');
    expect(restoreGateProblem(MAX_GATE_WAIT_MS)).toBeUndefined();
  });
});

describe('backup tables have a retention', () => {
  test('7 days by default, given in the plan, at most a year', () => {
    expect(planSchema.parse(base).backup.retention).toBe(DEFAULT_BACKUP_RETENTION_MS);
    expect(DEFAULT_BACKUP_RETENTION_MS).toBe(7 * DAY);
    expect(planSchema.parse({ ...base, backup: { retention: '36h' } }).backup.retention).toBe(36 * 3_600_000);
    expect(issues({ ...base, backup: { retention: '400d' } })).toEqual(['backup.retention: must be at most 365d']);
    expect(issues({ ...base, backup: { retention: 'forever' } })).toEqual(['backup.retention: "forever" is not a duration like 30s, 15m, 72h or 7d']);
  });
});

describe('the throttle query is one plain SELECT', () => {
  test.each([
    ['SELECT count(*) > 100 FROM pg_stat_activity', []],
    ['SELECT 1', []],
    ['DELETE FROM public.t RETURNING 0', ['copy.throttleQuery: must be a SELECT (found DeleteStmt)']],
    ['WITH d AS (DELETE FROM public.t RETURNING 1) SELECT count(*) FROM d', ['copy.throttleQuery: must only read; it holds DeleteStmt']],
    ['SELECT 1; DELETE FROM public.t', ['copy.throttleQuery: must be exactly one SELECT statement (found 2 statements)']],
    ['SELECT * INTO public.copy_of_t FROM public.t', ['copy.throttleQuery: must only read; it holds SELECT INTO']],
    ['SELECT 1 FROM public.t FOR UPDATE', ['copy.throttleQuery: must only read; it holds FOR UPDATE / FOR SHARE']],
    ['UPDATE public.t SET a = 1', ['copy.throttleQuery: must be a SELECT (found UpdateStmt)']],
  ])('%s', async (sql, expected) => {
    expect(await throttleQueryProblems(sql)).toEqual(expected);
  });

  test('text that does not parse is refused', async () => {
    expect((await throttleQueryProblems('SELEC 1'))[0]).toMatch(/^copy\.throttleQuery: does not parse: syntax error/);
  });
});

describe('session limits', () => {
  test('every session has a statement timeout and an idle-in-transaction limit; bulk sessions only the latter', () => {
    expect(DEFAULT_LIMITS.statementTimeoutMs).toBeGreaterThan(0);
    expect(DEFAULT_LIMITS.idleInTransactionMs).toBe(60_000);
    expect(BULK_LIMITS).toEqual({ statementTimeoutMs: 0, idleInTransactionMs: 60_000 });
    expect(copyConnections(16)).toBe(33);
  });
});
