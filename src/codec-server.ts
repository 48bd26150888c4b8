/**
 * The Temporal codec server protocol over HTTP, for the Web UI (`--ui-codec-endpoint`) and the CLI
 * (`temporal workflow show --codec-endpoint`): `POST /encode` and `POST /decode` take and return
 * `{"payloads": [{"metadata": {k: base64}, "data": base64}]}` (proto3 JSON), also under `/<namespace>/...`.
 *
 * It decrypts for whoever reaches it, so access is narrowed on every side we can see from here:
 * - it binds 127.0.0.1 unless told otherwise; on a loopback address the Host header must name a loopback host,
 *   which stops a web page from reaching it through DNS rebinding;
 * - a browser request (one with an Origin header) is answered only for the listed UI origins (CORS, preflight
 *   included): another site open in the operator's browser gets 403;
 * - with a token configured, every request must carry `Authorization: Bearer <token>` (the Temporal CLI's
 *   `--codec-auth`, or a reverse proxy that authenticates people and adds it).
 */
import { timingSafeEqual, createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Payload, PayloadCodec } from '@temporalio/common';

/** A Payload in proto3 JSON: every bytes field (each metadata value, data) base64. */
export interface JSONPayload {
  metadata?: Record<string, string> | null;
  data?: string | null;
}

// Written out here: the SDK's payloadToJSON / JSONToPayload (@temporalio/common/lib/proto-utils) throw "type must
// be a Type" in this install (its protobufjs is a second copy, not the one @temporalio/proto built its types with).
const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

export function payloadToJson(p: Payload): JSONPayload {
  const out: JSONPayload = {};
  const metadata = Object.entries(p.metadata ?? {});
  if (metadata.length > 0) out.metadata = Object.fromEntries(metadata.map(([k, v]) => [k, Buffer.from(v ?? []).toString('base64')]));
  if (p.data && p.data.length > 0) out.data = Buffer.from(p.data).toString('base64');
  return out;
}

export function jsonToPayload(j: JSONPayload): Payload {
  const bytes = (v: string): Buffer => {
    if (!BASE64.test(v)) throw new Error('a payload field is not base64');
    return Buffer.from(v, 'base64');
  };
  return {
    metadata: Object.fromEntries(Object.entries(j.metadata ?? {}).map(([k, v]) => [k, bytes(v)])),
    data: bytes(j.data ?? ''),
  };
}

export interface CodecServerOptions {
  codec: PayloadCodec;
  /** Default 127.0.0.1. */
  host?: string;
  /** 0: any free port. */
  port: number;
  /** Browser origins allowed (the Temporal UI's, e.g. http://localhost:8233). */
  origins: string[];
  /** If set, requests must send `Authorization: Bearer <token>`. */
  token?: string;
  /** Largest request body; the UI sends a page of events' payloads at a time. */
  maxBodyBytes?: number;
}

export interface RunningCodecServer {
  server: Server;
  /** http://host:port, what `--ui-codec-endpoint` and `--codec-endpoint` take. */
  url: string;
  close(): Promise<void>;
}

const DEFAULT_MAX_BODY = 32 * 1024 * 1024;
const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

/** `http://Host:8233/` and `http://host:8233` are one origin: scheme, lower-case host, port, no path. */
export function normalizeOrigin(value: string): string {
  const url = new URL(value);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`${value} is not an http(s) origin`);
  return url.origin;
}

function hostOf(header: string | undefined): string {
  if (!header) return '';
  const m = /^\[([^\]]+)\](?::\d+)?$/.exec(header) ?? /^([^:]+)(?::\d+)?$/.exec(header);
  return (m?.[1] ?? '').toLowerCase();
}

function sameSecret(given: string, expected: string): boolean {
  // Hashed first so the comparison takes the same time whatever the lengths.
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function parsePayloads(body: Buffer): JSONPayload[] | string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return 'body is not JSON';
  }
  const payloads = (parsed as { payloads?: unknown } | null)?.payloads;
  if (!Array.isArray(payloads)) return 'body must be {"payloads": [...]}';
  for (const [i, p] of payloads.entries()) {
    const ok = p !== null && typeof p === 'object' &&
      (p.data === undefined || p.data === null || typeof p.data === 'string') &&
      (p.metadata === undefined || p.metadata === null ||
        (typeof p.metadata === 'object' && Object.values(p.metadata as object).every((v) => typeof v === 'string')));
    if (!ok) return `payloads[${i}] must be {"metadata": {key: base64}, "data": base64}`;
  }
  return payloads as JSONPayload[];
}

export function codecRequestHandler(options: CodecServerOptions, boundToLoopback: () => boolean) {
  const origins = new Set(options.origins.map(normalizeOrigin));
  const limit = options.maxBodyBytes ?? DEFAULT_MAX_BODY;

  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const send = (status: number, body?: unknown): void => {
      if (body === undefined) {
        res.writeHead(status).end();
      } else {
        res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(body));
      }
    };
    if (boundToLoopback() && !LOOPBACK.has(hostOf(req.headers.host))) return send(403, { error: 'Host must be a loopback name' });

    const origin = req.headers.origin;
    if (origin !== undefined) {
      let allowed = false;
      try {
        allowed = origins.has(normalizeOrigin(origin));
      } catch {
        allowed = false;
      }
      if (!allowed) return send(403, { error: 'origin not allowed' });
      res.setHeader('Access-Control-Allow-Origin', normalizeOrigin(origin));
      res.setHeader('Access-Control-Allow-Credentials', 'true');
      res.setHeader('Vary', 'Origin');
    }

    const path = (req.url ?? '/').split('?')[0]!;
    const op = /^(?:\/[^/]+)?\/(encode|decode)$/.exec(path)?.[1] as 'encode' | 'decode' | undefined;
    if (!op) return send(404, { error: 'not found: POST /encode or /decode' });
    if (req.method === 'OPTIONS') {
      res.setHeader('Access-Control-Allow-Methods', 'POST, OPTIONS');
      res.setHeader('Access-Control-Allow-Headers', 'Content-Type, X-Namespace, Authorization');
      res.setHeader('Access-Control-Max-Age', '600');
      return send(204);
    }
    if (req.method !== 'POST') {
      res.setHeader('Allow', 'POST, OPTIONS');
      return send(405, { error: 'method not allowed' });
    }
    if (options.token !== undefined) {
      const auth = req.headers.authorization ?? '';
      const given = /^Bearer (.+)$/.exec(auth)?.[1] ?? '';
      if (!sameSecret(given, options.token)) return send(401, { error: 'authorization required' });
    }
    const body = await readBody(req, limit);
    if (body === undefined) return send(413, { error: `body larger than ${limit} bytes` });
    const payloads = parsePayloads(body);
    if (typeof payloads === 'string') return send(400, { error: payloads });
    try {
      const input = payloads.map(jsonToPayload);
      const output = op === 'decode' ? await options.codec.decode(input) : await options.codec.encode(input);
      return send(200, { payloads: output.map(payloadToJson) });
    } catch (e) {
      // CodecError messages name key ids, never key material or payload content.
      return send(400, { error: e instanceof Error ? e.message : String(e) });
    }
  };
}

export async function startCodecServer(options: CodecServerOptions): Promise<RunningCodecServer> {
  const host = options.host ?? '127.0.0.1';
  const loopback = LOOPBACK.has(host.toLowerCase());
  const handle = codecRequestHandler(options, () => loopback);
  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    });
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(options.port, host, () => {
      server.off('error', fail);
      ok();
    });
  });
  const { port } = server.address() as AddressInfo;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  let closing: Promise<void> | undefined;
  return {
    server,
    url: `http://${shownHost}:${port}`,
    close: () => {
      closing ??= new Promise<void>((ok) => {
        server.close(() => ok());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
