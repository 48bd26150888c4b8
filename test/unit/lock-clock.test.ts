/** Under the cutover lock each step sends its DDL together (src/swap.ts, LockClock): order kept, savepoints untouched. */
import type pg from 'pg';
import { LockClock } from '../../src/swap';

/** A client that records what reaches the server, one entry per round trip. */
function fakeClient(): { client: pg.Client; sent: string[] } {
  const sent: string[] = [];
  const client = { query: async (text: string) => { sent.push(text); return { rows: [{ n: sent.length }] }; } } as unknown as pg.Client;
  return { client, sent };
}

test('DDL is queued and sent before the next read, and at the end of the step; reads and parameters go as asked', async () => {
  const { client, sent } = fakeClient();
  const clock = new LockClock(client);
  clock.locked();
  clock.batch();
  await clock.step('move', async () => {
    await client.query('GRANT SELECT ON t TO a');
    await client.query('ALTER TABLE t ENABLE ROW LEVEL SECURITY');
    const { rows } = await client.query<{ n: number }>('SELECT 1 AS n');
    expect(rows).toEqual([{ n: 2 }]);
    await client.query('COMMENT ON TABLE t IS NULL');
    await client.query('CREATE INDEX ON t (a) WHERE a > $1', [1]);
    await client.query('DROP TRIGGER x ON t');
  });
  expect(sent).toEqual([
    'GRANT SELECT ON t TO a;\nALTER TABLE t ENABLE ROW LEVEL SECURITY',
    'SELECT 1 AS n',
    'COMMENT ON TABLE t IS NULL',
    'CREATE INDEX ON t (a) WHERE a > $1',
    'DROP TRIGGER x ON t',
  ]);
  expect(clock.finish().lockSteps).toEqual([{ step: 'move', ms: expect.any(Number), statements: 6, roundTrips: 5 }]);
});

test('inside a savepoint every statement goes at once, so a probe that must fail fails where it is asked', async () => {
  const { client, sent } = fakeClient();
  const clock = new LockClock(client);
  clock.batch();
  await clock.step('prove', async () => {
    await client.query('SAVEPOINT s');
    await client.query('DROP TABLE old RESTRICT');
    await client.query('ROLLBACK TO SAVEPOINT s');
    await client.query('RELEASE SAVEPOINT s');
    await client.query('DROP TRIGGER x ON t');
  });
  expect(sent).toEqual(['SAVEPOINT s', 'DROP TABLE old RESTRICT', 'ROLLBACK TO SAVEPOINT s', 'RELEASE SAVEPOINT s', 'DROP TRIGGER x ON t']);
});

test('without batch() (the lock wait, the swap back) statements go one by one, and the client is itself again after a step', async () => {
  const { client, sent } = fakeClient();
  const own = client.query;
  const clock = new LockClock(client);
  await clock.step('lock', async () => {
    await client.query('ALTER TABLE a RENAME TO b');
    await client.query('ALTER TABLE b RENAME TO c');
  });
  expect(sent).toEqual(['ALTER TABLE a RENAME TO b', 'ALTER TABLE b RENAME TO c']);
  expect(client.query).toBe(own);
});
