/**
 * A copy lane that stops moving must not hold its step forever. The copy heartbeats on a timer (a long chunk is
 * legitimate work), so Temporal alone would only notice a wedged lane at the activity's 30-minute limit. This guard
 * gives each chunk a limit; past it, it asks the server what the lane's two sessions are doing (the answer goes
 * into the error, so an operator sees a lock wait or an idle socket, not "timed out"), then destroys both sockets.
 * Every pending query on them fails, the server rolls the chunk's transaction back, and the activity's retry copies
 * the chunk again from its record: nothing is lost, and whatever the cause (a lock held elsewhere, a stream that
 * never ended), the copy goes on or fails with a reason.
 */
import type pg from 'pg';

/** How long a chunk may take before its lane counts as stalled: generous against the size the copy tunes toward. */
export function stallLimitMs(chunkTimeMs: number): number {
  return Math.max(60_000, chunkTimeMs * 20);
}

export class LaneStalled extends Error {
  constructor(readonly limitMs: number, readonly sessions: string) {
    super(`a copy chunk made no progress for ${Math.round(limitMs / 1000)} s (${sessions}); its sessions were closed and the chunk is copied again`);
    this.name = 'LaneStalled';
  }
}

const processId = (client: pg.Client): number | undefined => (client as unknown as { processID?: number }).processID;

/** What the server says the sessions are doing: state and wait event, never the query text (it may hold key values). */
async function describeSessions(observer: pg.Client, clients: pg.Client[]): Promise<string> {
  const pids = clients.map(processId).filter((p): p is number => p !== undefined);
  try {
    const { rows } = await observer.query<{ pid: number; state: string | null; wait: string | null }>(
      `SELECT pid, state, wait_event_type || ':' || wait_event AS wait FROM pg_stat_activity WHERE pid = ANY($1::int[]) ORDER BY pid`,
      [pids],
    );
    return rows.length ? rows.map((r) => `pid ${r.pid} ${r.state ?? 'unknown'}${r.wait ? `, waiting on ${r.wait}` : ''}`).join('; ') : 'no session left on the server';
  } catch {
    return 'sessions could not be read';
  }
}

/**
 * Runs `work` on `clients`; if it has not settled after `limitMs`, describes the sessions through `observer` and
 * destroys the clients' sockets, and the call rejects with LaneStalled (whatever error the destroyed sockets raised).
 */
export async function withStallGuard<T>(observer: pg.Client, clients: () => pg.Client[], limitMs: number, work: () => Promise<T>): Promise<T> {
  let settled = false;
  let stalled: LaneStalled | undefined;
  const timer = setTimeout(() => {
    const lane = clients();
    // The observer is shared and could be the thing that is stuck: the sockets go after 5 s whatever it answers.
    const unanswered = new Promise<string>((resolve) => setTimeout(resolve, 5000, 'the server did not answer').unref());
    void Promise.race([describeSessions(observer, lane), unanswered]).then((sessions) => {
      if (settled) return; // the chunk finished after all: these clients carry the next one now
      stalled = new LaneStalled(limitMs, sessions);
      for (const c of lane) (c as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    });
  }, limitMs);
  try {
    return await work();
  } catch (err) {
    throw stalled ?? err;
  } finally {
    settled = true;
    clearTimeout(timer);
  }
}
