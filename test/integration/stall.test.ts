/**
 * A copy lane that stops moving is ended, with the reason the server gives, instead of holding its step until the
 * activity's 30-minute limit (the copy heartbeats on a timer, so Temporal alone cannot tell a long chunk from a
 * wedged one). Here the lane's session waits on a lock another session holds; the guard must end it and say so.
 */
import pg from 'pg';
import { LaneStalled, withStallGuard } from '../../src/stall';
import { sql, uniqueName } from '../support/helpers';

const connect = async () => {
  const c = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await c.connect();
  c.on('error', () => undefined); // the guard destroys its socket on purpose
  return c;
};

test('a lane waiting on a lock is ended after the limit, the wait named, the lock holder untouched', async () => {
  const table = uniqueName('stall');
  await sql(`CREATE TABLE public.${table} (id int PRIMARY KEY)`);
  const holder = await connect();
  const observer = await connect();
  const lane = await connect();
  try {
    await holder.query('BEGIN');
    await holder.query(`LOCK TABLE public.${table} IN ACCESS EXCLUSIVE MODE`);
    const started = Date.now();
    const outcome = await withStallGuard(observer, () => [lane], 1500, () => lane.query(`SELECT count(*) FROM public.${table}`)).catch((e: unknown) => e);
    expect(outcome).toBeInstanceOf(LaneStalled);
    expect((outcome as Error).message).toMatch(/no progress for 2 s \(pid \d+ active, waiting on Lock:relation\)/);
    expect(Date.now() - started).toBeLessThan(10_000);
    // The holder's session is not the guard's business: its transaction is still open.
    expect((await holder.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  } finally {
    await holder.query('ROLLBACK').catch(() => undefined);
    await Promise.all([holder.end(), observer.end(), lane.end().catch(() => undefined)]);
  }
});

test('a chunk that finishes in time is not touched, even if the limit passes right after', async () => {
  const observer = await connect();
  const lane = await connect();
  try {
    expect(await withStallGuard(observer, () => [lane], 300, async () => (await lane.query('SELECT 2 AS two')).rows)).toEqual([{ two: 2 }]);
    await new Promise((r) => setTimeout(r, 800));
    expect((await lane.query('SELECT 3 AS three')).rows).toEqual([{ three: 3 }]);
  } finally {
    await Promise.all([observer.end(), lane.end()]);
  }
});
