/**
 * Liveness for every activity: while one runs, whatever it is doing (a statement waiting on a lock, a backoff
 * sleep, a catalog read), the worker heartbeats for it once a second. A worker that dies inside any step is then
 * noticed within the step's heartbeat timeout (workflows/shared.ts: HEARTBEAT_TIMEOUT) and the step is retried on
 * another worker, instead of after its start-to-close timeout. The beat repeats the activity's own last details,
 * so progress shown for it (the copy's last key) is never blanked.
 */
import type { ActivityInterceptorsFactory } from '@temporalio/worker';

const BEAT_MS = 1000;

/** Registered on the worker (workers/worker.ts); only activities scheduled with a heartbeat timeout are beaten for. */
export const keepAlive: ActivityInterceptorsFactory = (ctx) => ({
  inbound: {
    async execute(input, next) {
      const timeoutMs = ctx.info.heartbeatTimeoutMs;
      if (!timeoutMs || ctx.info.isLocal) return next(input);
      const own = ctx.heartbeat;
      let last: unknown;
      // Every heartbeat the activity sends passes here first (Context.current() is this same object).
      Object.defineProperty(ctx, 'heartbeat', {
        value: (details?: unknown) => {
          last = details;
          own(details);
        },
        configurable: true,
        writable: true,
      });
      const timer = setInterval(() => own(last), Math.min(BEAT_MS, timeoutMs / 3));
      try {
        return await next(input);
      } finally {
        clearInterval(timer);
      }
    },
  },
});
