/**
 * Where safeshift finds PostgreSQL and Temporal. Explicit environment variables always win; otherwise the
 * values the embedded dev stack wrote to `$SAFESHIFT_HOME/dev.env` are used, so a second terminal "just works".
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Client, Connection, type ConnectionOptions } from '@temporalio/client';
import type { PayloadCodec } from '@temporalio/common';
import type { NativeConnection, NativeConnectionOptions } from '@temporalio/worker';
import { payloadCodecFromEnv } from './codec';
import { DEFAULT_TASK_QUEUE } from './messages';

export function safeshiftHome(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.SAFESHIFT_HOME ?? '.safeshift');
}

export function devEnvPath(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(safeshiftHome(env), 'dev.env');
}

export function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/.exec(line);
    if (m && !line.trimStart().startsWith('#')) out[m[1]!] = m[2]!.replace(/^"(.*)"$/, '$1');
  }
  return out;
}

/** Fill unset variables from dev.env, if the dev stack wrote one. Returns the file used, if any. */
export function loadDevEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const file = devEnvPath(env);
  if (!existsSync(file)) return undefined;
  for (const [k, v] of Object.entries(parseEnvFile(readFileSync(file, 'utf8')))) {
    if (env[k] === undefined || env[k] === '') env[k] = v;
  }
  return file;
}

export interface TemporalConfig {
  address: string;
  namespace: string;
  taskQueue: string;
  uiUrl?: string;
  apiKey?: string;
  tls?: ConnectionOptions['tls'];
}

export function temporalConfig(env: NodeJS.ProcessEnv = process.env): TemporalConfig {
  const apiKey = env.TEMPORAL_API_KEY || undefined;
  const cert = env.TEMPORAL_TLS_CLIENT_CERT_PATH;
  const key = env.TEMPORAL_TLS_CLIENT_KEY_PATH;
  let tls: ConnectionOptions['tls'];
  if (cert && key) {
    tls = { clientCertPair: { crt: readFileSync(cert), key: readFileSync(key) } };
  } else if (apiKey || env.TEMPORAL_TLS === 'true') {
    tls = true;
  }
  return {
    address: env.TEMPORAL_ADDRESS || 'localhost:7233',
    namespace: env.TEMPORAL_NAMESPACE || 'default',
    taskQueue: env.SAFESHIFT_TASK_QUEUE || DEFAULT_TASK_QUEUE,
    uiUrl: env.TEMPORAL_UI_URL || undefined,
    apiKey,
    tls,
  };
}

/**
 * The failure converter every safeshift client and worker names (src/failure-converter.ts): failure messages and
 * stack traces go into a payload, so the codec encrypts them with the rest.
 */
export const FAILURE_CONVERTER_PATH = require.resolve('./failure-converter');

/**
 * A client whose payloads go through the codec the environment configures (src/codec.ts): the plan, status and
 * decisions are stored encrypted, and so are the messages of the failures it sends (and it decrypts those it
 * reads: a refused decision's reason, a failed step's error). Refused before connecting when no codec key is
 * configured.
 */
export async function connectClient(config: TemporalConfig = temporalConfig(), codec: PayloadCodec = payloadCodecFromEnv()): Promise<Client> {
  const connection = await Connection.connect({
    address: config.address,
    tls: config.tls,
    apiKey: config.apiKey,
    connectTimeout: '5s',
  });
  return new Client({ connection, namespace: config.namespace, dataConverter: { payloadCodecs: [codec], failureConverterPath: FAILURE_CONVERTER_PATH } });
}

export async function connectWorker(config: TemporalConfig = temporalConfig()): Promise<NativeConnection> {
  const options: NativeConnectionOptions = { address: config.address, apiKey: config.apiKey };
  if (config.tls) options.tls = config.tls;
  // The worker package is loaded only by what runs a worker: the CLI's other commands start faster without it.
  const { NativeConnection: Native } = await import('@temporalio/worker');
  return Native.connect(options);
}

export function workflowUiUrl(config: TemporalConfig, workflowId: string): string | undefined {
  if (!config.uiUrl) return undefined;
  return `${config.uiUrl.replace(/\/$/, '')}/namespaces/${encodeURIComponent(config.namespace)}/workflows/${encodeURIComponent(workflowId)}`;
}
