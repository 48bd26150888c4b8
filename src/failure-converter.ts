/**
 * Encrypted failures (issue 14, item 5). Temporal's default failure converter leaves a failure's message and stack
 * trace in plaintext next to the encrypted payloads: a refused decision's reason (who may approve), a copy error's
 * column and key range, a stack trace naming tables. With `encodeCommonAttributes` they move into the failure's
 * `encodedAttributes` payload, which the payload codec (src/codec.ts) encrypts like any other; the plaintext
 * message becomes "Encoded failure". The failure `type` (e.g. `NotAnApprover`, `DataRejected`) stays readable:
 * it names a class of outcome, never data.
 *
 * The SDK takes a failure converter only as a module path with a `failureConverter` export (it is loaded inside
 * the workflow sandbox too), hence this file: the worker (activities), the workflow bundle (workers/bundle.ts) and
 * every client (src/config.ts) name it. Kept free of Node imports so webpack can bundle it for the sandbox.
 */
import { DefaultFailureConverter } from '@temporalio/common';

export const failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
