/**
 * `safeshift codec-server [--port P] [--host H] [--ui-origin URL...] [--token-env VAR]`: decrypts history
 * payloads for the Temporal Web UI and CLI with the keys the worker uses (src/codec.ts), until SIGINT / SIGTERM.
 */
import { CodecError, payloadCodecFromEnv } from '../codec';
import { normalizeOrigin, startCodecServer } from '../codec-server';
import { temporalConfig } from '../config';
import { CliError } from './exit';

export interface CodecServerCommandOptions {
  port: string;
  host: string;
  uiOrigin?: string[];
  tokenEnv?: string;
}

export async function runCodecServer(opts: CodecServerCommandOptions, print: (line: string) => void): Promise<void> {
  const port = Number(opts.port);
  if (!/^\d+$/.test(opts.port) || port > 65535) throw new CliError(`--port: ${opts.port} is not a TCP port (0-65535)`);
  let codec;
  try {
    codec = payloadCodecFromEnv();
  } catch (e) {
    if (e instanceof CodecError) throw new CliError(`safeshift codec-server: ${e.message}`);
    throw e;
  }
  if (!codec.encrypting) throw new CliError('safeshift codec-server: SAFESHIFT_CODEC_KEYS=off: there is nothing to decrypt');
  // The UI of the dev stack (TEMPORAL_UI_URL, from dev.env) unless origins are named.
  const uiUrl = temporalConfig().uiUrl;
  const named = opts.uiOrigin && opts.uiOrigin.length > 0 ? opts.uiOrigin : uiUrl ? [uiUrl] : [];
  const origins: string[] = [];
  for (const o of named) {
    try {
      origins.push(normalizeOrigin(o));
    } catch {
      throw new CliError(`--ui-origin: ${o} is not an http(s) URL`);
    }
  }
  let token: string | undefined;
  if (opts.tokenEnv) {
    token = process.env[opts.tokenEnv];
    if (!token) throw new CliError(`--token-env: environment variable ${opts.tokenEnv} is not set`);
  }
  let running;
  try {
    running = await startCodecServer({ codec, host: opts.host, port, origins, token });
  } catch (e) {
    throw new CliError(`safeshift codec-server: cannot listen on ${opts.host}:${port}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  print(`codec server on ${running.url} (keys: ${codec.keys.map((k) => k.id).join(', ')}; newest first)`);
  print(`UI origins allowed: ${origins.length > 0 ? origins.join(', ') : 'none (no browser access; CLI only)'}`);
  print(`${token ? 'requests must send Authorization: Bearer <token>' : 'no token: anyone who reaches this address can decrypt'}`);
  print(`use: temporal server start-dev --ui-codec-endpoint ${running.url}  |  temporal workflow show --codec-endpoint ${running.url} ...`);
  await new Promise<void>((done) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      done();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  await running.close();
}
