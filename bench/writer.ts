/**
 * The steady application writer of the benches (bench/cutover.ts, bench/operations.ts): `writers` connections,
 * `rate` writes a second in total, 80 % single-row UPDATEs and 20 % INSERTs on (id, v, note, updated_at), each
 * connection owning its own ids (id % writers === lane), so the last value written per id is known exactly. A
 * slot that passed while its connection was blocked is skipped, not made up later: the rate dips during a block
 * and the latency of the blocked statement is the figure that counts.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';

/** Wall-clock ms with sub-ms resolution (monotonic within the run), comparable with PostgreSQL's clock_timestamp(). */
export const nowMs = () => performance.timeOrigin + performance.now();

export interface Write { start: number; ms: number; ok: boolean; missed: boolean }

export interface WriterState {
  writes: Write[];
  /** id -> last v written (committed); a failed statement marks its id uncertain. */
  expected: Map<number, number>;
  uncertain: Set<number>;
  inserted: number;
  errors: string[];
}

export interface WriterOptions {
  url: string;
  /** Qualified, quoted as needed. */
  table: string;
  /** Seeded ids are 1..rows; inserts start above. */
  rows: number;
  writers: number;
  /** Writes a second, all connections together. */
  rate: number;
}

export function newWriterState(): WriterState {
  return { writes: [], expected: new Map(), uncertain: new Set(), inserted: 0, errors: [] };
}

/** One connection of `o.writers`: ids with id % writers === lane belong to this lane only, so per-id order is known. */
export async function writerLane(o: WriterOptions, lane: number, state: WriterState, nextV: () => number, stop: () => boolean, deadline: number): Promise<void> {
  const client = new pg.Client({ connectionString: o.url, application_name: `bench writer ${lane}` });
  await client.connect();
  await client.query(`SET statement_timeout = '60s'`);
  const interval = (1000 * o.writers) / o.rate;
  const own: number[] = [];
  let nextId = o.rows + 1;
  while (nextId % o.writers !== lane) nextId++;
  let slot = nowMs() + Math.random() * interval;
  try {
    while (!stop() && nowMs() < deadline) {
      const wait = slot - nowMs();
      if (wait > 0) await sleep(wait);
      const v = nextV();
      let id: number;
      let sql: string;
      let params: unknown[];
      const insert = Math.random() < 0.2;
      if (insert) {
        id = nextId;
        nextId += o.writers;
        sql = `INSERT INTO ${o.table} (id, v, note, updated_at) VALUES ($1, $2, $3, now())`;
        params = [id, v, `bench insert ${v}`];
      } else {
        // Half of the updates hit a row this writer inserted (it must be in the target too), half a seeded row.
        if (own.length > 0 && Math.random() < 0.5) id = own[Math.floor(Math.random() * own.length)]!;
        else {
          id = 1 + Math.floor(Math.random() * o.rows);
          id += (lane - (id % o.writers) + o.writers) % o.writers;
          if (id > o.rows) id -= o.writers;
        }
        sql = `UPDATE ${o.table} SET v = $2, note = $3, updated_at = now() WHERE id = $1`;
        params = [id, v, `bench update ${v}`];
      }
      const start = nowMs();
      const t = process.hrtime.bigint();
      try {
        const r = await client.query(sql, params);
        const ms = Number(process.hrtime.bigint() - t) / 1e6;
        const missed = r.rowCount !== 1;
        state.writes.push({ start, ms, ok: true, missed });
        if (!missed) state.expected.set(id, v);
        if (insert) { own.push(id); state.inserted++; }
      } catch (err) {
        const ms = Number(process.hrtime.bigint() - t) / 1e6;
        state.writes.push({ start, ms, ok: false, missed: false });
        state.uncertain.add(id);
        if (state.errors.length < 5) state.errors.push(`${insert ? 'INSERT' : 'UPDATE'} id ${id}: ${(err as Error).message}`);
      }
      slot += interval;
      if (slot < nowMs()) slot = nowMs(); // skipped slots are not made up
    }
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** All lanes of a writer; `stop()` ends them. Resolves when every lane has ended. */
export function startWriter(o: WriterOptions, state: WriterState, firstV: number, stop: () => boolean, deadline: number): Promise<PromiseSettledResult<void>[]> {
  let v = firstV;
  return Promise.allSettled(Array.from({ length: o.writers }, (_, lane) => writerLane(o, lane, state, () => v++, stop, deadline)));
}

export function stats(ms: number[]): { n: number; p50: number; p99: number; max: number } {
  if (ms.length === 0) return { n: 0, p50: NaN, p99: NaN, max: NaN };
  const s = [...ms].sort((a, b) => a - b);
  const rank = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]!;
  return { n: s.length, p50: rank(0.5), p99: rank(0.99), max: s[s.length - 1]! };
}

export const fmt = (x: number) => (Number.isNaN(x) ? '-' : x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : x.toFixed(0));
