/**
 * A rollback the original table cannot take (issue 11, finding 5): the target widens `code char(20)` to
 * `varchar(40)` and a 30-character code is written after cutover. Preflight predicts it at the cutover gate; the
 * rollback then stops as blocked (not failed), the new table stays live and keeps recording writes, and once the
 * value is fixed `safeshift rollback` finishes it: the original table holds every write made after cutover.
 */
import { atPhase, basePlan, relationOid, runCli, sql, statusOf, uniqueName, waitFor, writePlan } from '../support/helpers';

interface Row { code: string; note: string }

const TOO_LONG = `toolong-${'x'.repeat(22)}`; // 30 characters: fits varchar(40), not char(20)

describe('a rollback refused on data written after cutover', () => {
  const src = uniqueName('codes');
  const planName = src.replace(/_/g, '-');
  const expected = new Map<number, Row>();
  let sourceOid = 0;

  beforeAll(async () => {
    await sql(`CREATE TABLE public.${src} (id int PRIMARY KEY, code char(20) NOT NULL, note text)`);
    await sql(`INSERT INTO public.${src} SELECT g, 'c' || g, 'seed ' || g FROM generate_series(1, 200) g`);
    for (let g = 1; g <= 200; g++) expected.set(g, { code: `c${g}`, note: `seed ${g}` });
    sourceOid = await relationOid(`public.${src}`);
    const plan = writePlan(basePlan(src, `public.${src}`, `public.${src}_v2`, {
      create: `CREATE TABLE public.${src}_v2 (id int PRIMARY KEY, code varchar(40) NOT NULL, note text)`,
    }));
    expect((await runCli(['start', plan])).code).toBe(0);
    await waitFor(planName, atPhase('awaiting_cutover'));
  }, 180_000);

  test('preflight predicts it: the cutover gate names the column and both types', async () => {
    const s = await statusOf(planName);
    const warning = s.warnings.find((w) => /\bcode\b/.test(w) && w.includes('character varying(40)') && w.includes('character(20)'));
    expect(warning).toBeDefined();
    expect(s.rollbackRisks).toEqual([expect.objectContaining({ column: 'code', from: 'character varying(40)', to: 'character(20)' })]);
    const shown = await runCli(['status', planName]);
    expect(shown.stdout).toContain(warning!);
  });

  test('blocked, not failed; writes keep being recorded; fixed and retried, it ends rolled_back with every write', async () => {
    const live = `public.${src}`;
    const write = async (id: number, row: Row | null, insert = false) => {
      if (row === null) await sql(`DELETE FROM ${live} WHERE id = $1`, [id]);
      else if (insert) await sql(`INSERT INTO ${live} (id, code, note) VALUES ($1, $2, $3)`, [id, row.code, row.note]);
      else await sql(`UPDATE ${live} SET code = $2, note = $3 WHERE id = $1`, [id, row.code, row.note]);
      if (row === null) expected.delete(id);
      else expected.set(id, row);
    };

    expect((await runCli(['approve', planName, '--as', 'alice'])).code).toBe(0);
    await waitFor(planName, atPhase('awaiting_drop'), 60_000);
    const targetOid = await relationOid(live);
    expect(targetOid).not.toBe(sourceOid);

    // After cutover, through the live name (the new table): one code that the old char(20) cannot hold.
    await write(1001, { code: 'new-short', note: 'after cutover' }, true);
    await write(5, { code: 'upd-5', note: 'updated after cutover' });
    await write(1002, { code: TOO_LONG, note: 'too long for the old table' }, true);
    await write(7, null);

    expect((await runCli(['rollback', planName, '--as', 'carol'])).code).toBe(0);
    const blocked = await waitFor(planName, (s) => s.rollbackBlocked !== undefined, 60_000);
    expect(blocked.phase).toBe('rollback_blocked');
    expect(blocked.outcome).toBeUndefined();
    expect(blocked.rollbackBlocked).toMatchObject({ sqlstate: '22001', column: 'code', rows: 1, attempts: 1 });
    expect(blocked.rollbackBlocked!.reason).toContain('character(20)');
    expect(JSON.stringify(blocked)).not.toContain(TOO_LONG); // no row values in status
    const shown = await runCli(['status', planName]);
    expect(shown.stdout).toMatch(/rollback blocked/i);
    expect(shown.stdout).toContain(`safeshift rollback ${planName}`);

    // Blocked: the new table is still live and every write is still recorded for the rollback.
    expect(await relationOid(live)).toBe(targetOid);
    await write(1003, { code: 'while-blocked', note: 'written while blocked' }, true);
    await write(10, { code: 'c10', note: 'updated while blocked' });
    await write(11, null);

    // Asked again (an abort asks for the original table too) on data that is still too long: blocked again.
    expect((await runCli(['abort', planName, '--as', 'carol'])).code).toBe(0);
    const again = await waitFor(planName, (s) => s.rollbackBlocked?.attempts === 2, 60_000);
    expect(again.phase).toBe('rollback_blocked');
    expect(await relationOid(live)).toBe(targetOid);

    // The operator fixes the data and finishes the rollback.
    await write(1002, { code: 'fixed-short', note: 'too long for the old table' });
    expect((await runCli(['rollback', planName, '--as', 'carol'])).code).toBe(0);
    const end = await waitFor(planName, atPhase('rolled_back'), 60_000);
    expect(end.rollbackBlocked).toBeUndefined();
    expect(end.compensations.every((c) => c.state === 'done')).toBe(true);

    // The original table is live again, with its own type, and holds exactly every write.
    expect(await relationOid(live)).toBe(sourceOid);
    const [type] = await sql<{ type: string }>(`SELECT format_type(atttypid, atttypmod) AS type FROM pg_attribute WHERE attrelid = $1 AND attname = 'code'`, [sourceOid]);
    expect(type!.type).toBe('character(20)');
    const rows = await sql<{ id: number; code: string; note: string }>(`SELECT id, code::text AS code, note FROM ${live} ORDER BY id`);
    expect(rows).toEqual([...expected.entries()].sort((a, b) => a[0] - b[0]).map(([id, r]) => ({ id, ...r })));

    const audit = await sql<{ action: string; actor: string; details: string }>(
      `SELECT action, actor, details::text AS details FROM safeshift.audit_log WHERE workflow_id = $1 ORDER BY seq`, [`migration-${planName}`]);
    expect(audit.filter((a) => a.action === 'rollback:blocked')).toHaveLength(2);
    const retries = audit.filter((a) => a.action === 'rollback:retry');
    expect(retries.map((a) => [a.actor, JSON.parse(a.details).via])).toEqual([['carol', 'abort'], ['carol', 'rollback']]);
    expect(audit.map((a) => a.action)).toContain('phase:rollback_blocked');
    expect(audit.some((a) => a.details.includes(TOO_LONG))).toBe(false);
  }, 240_000);
});
