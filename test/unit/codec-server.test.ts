/**
 * The codec server's access rules, on a loopback port (no Temporal needed): the UI's origin only (preflight
 * included), loopback Host names only, a bearer token when one is configured, and the protocol's shape.
 */
import { request, type IncomingHttpHeaders } from 'node:http';
import { randomBytes } from 'node:crypto';
import { defaultPayloadConverter } from '@temporalio/common';
import { AesGcmCodec } from '../../src/codec';
import { jsonToPayload, payloadToJson, startCodecServer, type RunningCodecServer } from '../../src/codec-server';

const UI = 'http://localhost:8233';
const codec = new AesGcmCodec([{ id: 'k1', key: randomBytes(32) }]);
let open: RunningCodecServer;
let withToken: RunningCodecServer;

beforeAll(async () => {
  open = await startCodecServer({ codec, port: 0, origins: [`${UI}/`] });
  withToken = await startCodecServer({ codec, port: 0, origins: [UI], token: 's3cret-token' });
});
afterAll(async () => {
  await open.close();
  await withToken.close();
});

function call(server: RunningCodecServer, path: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}) {
  return new Promise<{ status: number; headers: IncomingHttpHeaders; text: string }>((ok, fail) => {
    const req = request(`${server.url}${path}`, { method: init.method ?? 'POST', headers: { 'Content-Type': 'application/json', ...init.headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => ok({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', fail);
    req.end(init.body);
  });
}

const body = async (value: unknown) => JSON.stringify({ payloads: (await codec.encode([defaultPayloadConverter.toPayload(value)])).map(payloadToJson) });

test('decode and encode speak proto3 JSON, at /decode and /<namespace>/decode', async () => {
  const res = await call(open, '/default/decode', { body: await body({ secret: 'plan text' }) });
  expect(res.status).toBe(200);
  const [p] = JSON.parse(res.text).payloads;
  expect(defaultPayloadConverter.fromPayload(jsonToPayload(p))).toEqual({ secret: 'plan text' });
  const enc = await call(open, '/encode', { body: JSON.stringify({ payloads: [payloadToJson(defaultPayloadConverter.toPayload('x'))] }) });
  expect(enc.status).toBe(200);
  expect(enc.text).not.toContain(Buffer.from('"x"').toString('base64'));
  const [back] = await codec.decode(JSON.parse(enc.text).payloads.map(jsonToPayload));
  expect(defaultPayloadConverter.fromPayload(back!)).toBe('x');
});

test('CORS: the UI origin gets its preflight and answers; any other origin gets 403', async () => {
  const pre = await call(open, '/decode', { method: 'OPTIONS', headers: { Origin: UI, 'Access-Control-Request-Headers': 'content-type,x-namespace' } });
  expect(pre.status).toBe(204);
  expect(pre.headers['access-control-allow-origin']).toBe(UI);
  expect(pre.headers['access-control-allow-methods']).toMatch(/POST/);
  expect(pre.headers['access-control-allow-headers']).toMatch(/X-Namespace/);
  const ok = await call(open, '/decode', { headers: { Origin: UI, 'X-Namespace': 'default' }, body: await body(1) });
  expect(ok.status).toBe(200);
  expect(ok.headers['access-control-allow-origin']).toBe(UI);
  for (const origin of ['https://evil.example', 'http://localhost:9999', 'null']) {
    const res = await call(open, '/decode', { headers: { Origin: origin }, body: await body({ secret: 'plan text' }) });
    expect(res.status).toBe(403);
    expect(res.text).not.toContain('plan text');
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
  }
});

test('bound to loopback, a request naming another Host (DNS rebinding) is refused', async () => {
  expect((await call(open, '/decode', { headers: { Host: 'evil.example:80' }, body: await body(1) })).status).toBe(403);
  expect((await call(open, '/decode', { headers: { Host: `localhost:${new URL(open.url).port}` }, body: await body(1) })).status).toBe(200);
});

test('with a token, requests without the right bearer token get 401 (the preflight carries none and passes)', async () => {
  expect((await call(withToken, '/decode', { body: await body(1) })).status).toBe(401);
  expect((await call(withToken, '/decode', { headers: { Authorization: 'Bearer wrong' }, body: await body(1) })).status).toBe(401);
  expect((await call(withToken, '/decode', { headers: { Authorization: 'Bearer s3cret-token' }, body: await body(1) })).status).toBe(200);
  expect((await call(withToken, '/decode', { method: 'OPTIONS', headers: { Origin: UI } })).status).toBe(204);
});

test('bad requests: unknown path 404, wrong method 405, bad bodies 400 with a reason, a payload of another key 400', async () => {
  expect((await call(open, '/', { method: 'GET' })).status).toBe(404);
  expect((await call(open, '/decode', { method: 'GET' })).status).toBe(405);
  expect((await call(open, '/decode', { body: 'not json' })).status).toBe(400);
  expect(JSON.parse((await call(open, '/decode', { body: '{"payloads":[{"data":5}]}' })).text).error).toMatch(/payloads\[0\]/);
  expect((await call(open, '/decode', { body: '{"payloads":[{"data":"***"}]}' })).status).toBe(400);
  const other = new AesGcmCodec([{ id: 'k2', key: randomBytes(32) }]);
  const foreign = JSON.stringify({ payloads: (await other.encode([defaultPayloadConverter.toPayload(1)])).map(payloadToJson) });
  expect(JSON.parse((await call(open, '/decode', { body: foreign })).text).error).toMatch(/key id k2, which is not among the codec keys \(k1\)/);
});
