/**
 * Reading Temporal's API objects as an authorised operator does (the codec server for the UI, the CLI's client):
 * every encrypted payload decrypted, failure messages and stack traces included (src/failure-converter.ts moves
 * them into an encrypted payload). `fetchHistory` and `describe` return what Temporal stores, i.e. ciphertext.
 */
import { defaultPayloadConverter, type Payload, type PayloadCodec, type ProtoFailure } from '@temporalio/common';
import { ENCODING_ENCRYPTED, payloadCodecFromEnv } from '../../src/codec';

const isPayload = (o: Record<string, unknown>): boolean => typeof o.metadata === 'object' && o.metadata !== null && 'data' in o;

/** A plain deep copy of `value` (a history, a pending activity, a failure) with every encrypted payload decrypted. */
export async function decrypted<T>(value: T, codec: PayloadCodec = payloadCodecFromEnv()): Promise<T> {
  const walk = async (v: unknown): Promise<unknown> => {
    if (v === null || typeof v !== 'object' || v instanceof Uint8Array) return v;
    if (Array.isArray(v)) return Promise.all(v.map(walk));
    const o = v as Record<string, unknown>;
    if (isPayload(o)) {
      const encoding = Buffer.from((o.metadata as Record<string, Uint8Array>).encoding ?? []).toString();
      return encoding === ENCODING_ENCRYPTED ? (await codec.decode([o as Payload]))[0] : o;
    }
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(o)) out[k] = await walk(x);
    return out;
  };
  return (await walk(value)) as T;
}

/** An API object as text, every bytes field read as UTF-8 (the default converter writes JSON). */
export function asText(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString('utf8') : v));
}

/** A failure's real message: from its (decrypted) encoded attributes when it has them, else the plain field. */
export async function failureMessage(failure: ProtoFailure | null | undefined, codec?: PayloadCodec): Promise<string | undefined> {
  if (!failure) return undefined;
  const plain = failure.encodedAttributes ? await decrypted(failure.encodedAttributes, codec) : undefined;
  const attrs = plain ? defaultPayloadConverter.fromPayload<{ message?: string }>(plain as Payload) : undefined;
  return attrs?.message ?? failure.message ?? undefined;
}
