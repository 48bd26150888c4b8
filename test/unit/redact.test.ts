/**
 * Every form in which PostgreSQL puts a row value into an error (messages, DETAIL, CONTEXT) is told without the
 * value. The errors below are the fields pg's DatabaseError had for these statements on PostgreSQL 18.
 */
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { withoutValues } from '../../activities/support';
import { fatal } from '../../src/errors';
import { describePgError, errorText, isPgError, REDACTED, redactedMessage, scrubDeep, scrubText, type PgErrorLike } from '../../src/redact';

const VALUES = ['SSN078-05-1120', 'leak.victim@example.com', 'dup@example.com', '99999999999', '2020-02-30', '2020-13-45 secret', 'NOTANINT', 'secret', '0xc3', '0xff', '(99)'];

function pgError(fields: Partial<PgErrorLike> & Pick<PgErrorLike, 'code' | 'message'>): PgErrorLike & Error {
  return Object.assign(new Error(fields.message), { name: 'error', severity: 'ERROR' }, fields);
}

const noValue = (text: string) => expect(VALUES.filter((v) => text.includes(v))).toEqual([]);

describe('describePgError: SQLSTATE, names and structure kept, values redacted', () => {
  test.each([
    ['invalid input syntax (22P02)', pgError({ code: '22P02', message: 'invalid input syntax for type bigint: "SSN078-05-1120"' }),
      `invalid input syntax for type bigint: ${REDACTED} (SQLSTATE 22P02)`],
    ['invalid input syntax with a quote in the value', pgError({ code: '22P02', message: 'invalid input syntax for type integer: "12" OR "secret"' }),
      `invalid input syntax for type integer: ${REDACTED} (SQLSTATE 22P02)`],
    ['invalid input in COPY, column from CONTEXT', pgError({ code: '22P02', message: 'invalid input syntax for type integer: "NOTANINT"', where: 'COPY rx, line 2, column age: "NOTANINT"' }),
      `invalid input syntax for type integer: ${REDACTED} (SQLSTATE 22P02, column age, COPY line 2)`],
    ['value too long (22001, no value in it)', pgError({ code: '22001', message: 'value too long for type character varying(5)' }),
      'value too long for type character varying(5) (SQLSTATE 22001)'],
    ['unique violation: DETAIL Key (...)=(...) dropped', pgError({ code: '23505', message: 'duplicate key value violates unique constraint "rx_email_key"', detail: 'Key (email)=(dup@example.com) already exists.', schema: 'public', table: 'rx', constraint: 'rx_email_key' }),
      'duplicate key value violates unique constraint "rx_email_key" (SQLSTATE 23505, table public.rx, constraint rx_email_key)'],
    ['check violation: DETAIL Failing row dropped', pgError({ code: '23514', message: 'new row for relation "rx" violates check constraint "age_ok"', detail: 'Failing row contains (4, leak.victim@example.com, -5, null).', schema: 'public', table: 'rx', constraint: 'age_ok' }),
      'new row for relation "rx" violates check constraint "age_ok" (SQLSTATE 23514, table public.rx, constraint age_ok)'],
    ['check violation in COPY: CONTEXT row dropped, line kept', pgError({ code: '23514', message: 'new row for relation "rx" violates check constraint "age_ok"', detail: 'Failing row contains (10, leak.victim@example.com, -1).', where: 'COPY rx, line 1: "10\tleak.victim@example.com\t-1"', table: 'rx', constraint: 'age_ok' }),
      'new row for relation "rx" violates check constraint "age_ok" (SQLSTATE 23514, table rx, constraint age_ok, COPY line 1)'],
    ['not-null violation', pgError({ code: '23502', message: 'null value in column "email" of relation "rx" violates not-null constraint', detail: 'Failing row contains (5, null, leak.victim@example.com).', schema: 'public', table: 'rx', column: 'email' }),
      'null value in column "email" of relation "rx" violates not-null constraint (SQLSTATE 23502, table public.rx, column email)'],
    ['foreign key violation: DETAIL Key ... is not present dropped', pgError({ code: '23503', message: 'insert or update on table "rx_child" violates foreign key constraint "rx_child_parent_fkey"', detail: 'Key (parent)=(99) is not present in table "rx".', schema: 'public', table: 'rx_child', constraint: 'rx_child_parent_fkey' }),
      'insert or update on table "rx_child" violates foreign key constraint "rx_child_parent_fkey" (SQLSTATE 23503, table public.rx_child, constraint rx_child_parent_fkey)'],
    ['numeric field overflow: its value-free DETAIL kept', pgError({ code: '22003', message: 'numeric field overflow', detail: 'A field with precision 5, scale 2 must round to an absolute value less than 10^3.' }),
      'numeric field overflow A field with precision 5, scale 2 must round to an absolute value less than 10^3. (SQLSTATE 22003)'],
    ['out of range for type', pgError({ code: '22003', message: 'value "99999999999" is out of range for type integer' }),
      `value ${REDACTED} is out of range for type integer (SQLSTATE 22003)`],
    ['date/time field out of range', pgError({ code: '22008', message: 'date/time field value out of range: "2020-02-30"' }),
      `date/time field value out of range: ${REDACTED} (SQLSTATE 22008)`],
    ['timestamp out of range', pgError({ code: '22008', message: 'timestamp out of range: "2020-13-45 secret"' }),
      `timestamp out of range: ${REDACTED} (SQLSTATE 22008)`],
    ['invalid date', pgError({ code: '22007', message: 'invalid input syntax for type date: "2020-13-45 secret"' }),
      `invalid input syntax for type date: ${REDACTED} (SQLSTATE 22007)`],
    ['invalid byte sequence', pgError({ code: '22021', message: 'invalid byte sequence for encoding "UTF8": 0xc3', where: 'COPY rx, line 1' }),
      `invalid byte sequence for encoding "UTF8": ${REDACTED} (SQLSTATE 22021, COPY line 1)`],
    ['untranslatable character', pgError({ code: '22P05', message: 'character with byte sequence 0xe2 0x82 0xac in encoding "UTF8" has no equivalent in encoding "LATIN1"' }),
      `character with byte sequence ${REDACTED} in encoding "UTF8" has no equivalent in encoding "LATIN1" (SQLSTATE 22P05)`],
    ['malformed array literal', pgError({ code: '22P02', message: 'malformed array literal: "{secret"', detail: 'Unexpected end of input.' }),
      `malformed array literal: ${REDACTED} (SQLSTATE 22P02)`],
    ['json: DETAIL Token and CONTEXT dropped', pgError({ code: '22P02', message: 'invalid input syntax for type json', detail: 'Token "secret" is invalid.', where: 'JSON data, line 1: secret...' }),
      'invalid input syntax for type json (SQLSTATE 22P02)'],
    ['domain check: data type named', pgError({ code: '23514', message: 'value for domain posint violates check constraint "posint_check"', schema: 'public', dataType: 'posint', constraint: 'posint_check' }),
      'value for domain posint violates check constraint "posint_check" (SQLSTATE 23514, constraint posint_check, type posint)'],
    ['COPY missing data', pgError({ code: '22P04', message: 'missing data for column "name"', where: 'COPY rx, line 1: "11\t\\N\tsecret"' }),
      'missing data for column "name" (SQLSTATE 22P04, COPY line 1)'],
    ['unknown class-22 message: told by condition only', pgError({ code: '22023', message: 'some new message quoting "secret"' }),
      'invalid_parameter_value (message withheld: it may quote a row value) (SQLSTATE 22023)'],
    ['RAISE in a trigger: user text withheld', pgError({ code: 'P0001', message: 'bad e-mail leak.victim@example.com' }),
      'raise_exception (message withheld: it may quote a row value) (SQLSTATE P0001)'],
    ['lock timeout (value-free class): verbatim', pgError({ code: '55P03', message: 'canceling statement due to lock timeout' }),
      'canceling statement due to lock timeout (SQLSTATE 55P03)'],
  ])('%s', (_name, err, expected) => {
    const text = describePgError(err);
    expect(text).toBe(expected);
    noValue(text);
  });

  test('a column found by the caller is named when PostgreSQL named none', () => {
    const err = pgError({ code: '22P02', message: 'invalid input syntax for type bigint: "SSN078-05-1120"' });
    expect(describePgError(err, { column: 'ssn' })).toBe(`invalid input syntax for type bigint: ${REDACTED} (SQLSTATE 22P02, column ssn)`);
  });

  test('a message that does not fit its template is withheld, not passed on', () => {
    expect(redactedMessage(pgError({ code: '23505', message: 'duplicate key value violates unique constraint "c" with (leak.victim@example.com)' })))
      .toBe('unique_violation (message withheld: it may quote a row value)');
  });
});

test('isPgError: a server error, not Node\'s own (EPIPE has five capitals too) nor an Error', () => {
  expect(isPgError(pgError({ code: '22P02', message: 'x' }))).toBe(true);
  expect(isPgError(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }))).toBe(false);
  expect(isPgError(new Error('plain'))).toBe(false);
  expect(isPgError('22P02')).toBe(false);
});

test('errorText: a pg error described, any other error scrubbed', () => {
  expect(errorText(pgError({ code: '22P02', message: 'invalid input syntax for type bigint: "SSN078-05-1120"' })))
    .toBe(`invalid input syntax for type bigint: ${REDACTED} (SQLSTATE 22P02)`);
  expect(errorText(new Error('could not validate: invalid input syntax for type bigint: "SSN078-05-1120"'))).toBe(`could not validate: invalid input syntax for type bigint: ${REDACTED}`);
  expect(errorText(new Error('connection terminated'))).toBe('connection terminated');
});

describe('scrubText: value-bearing fragments cut out of text already built', () => {
  test.each([
    ['t refused: invalid input syntax for type bigint: "SSN078-05-1120" (SQLSTATE 22P02)', `t refused: invalid input syntax for type bigint: ${REDACTED} (SQLSTATE 22P02)`],
    ['Key (email)=(dup@example.com) already exists.', `Key (email)=(${REDACTED}) already exists.`],
    ['Key (a, b)=(1, secret) is not present in table "t".', `Key (a, b)=(${REDACTED}) is not present in table "t".`],
    ['Key (parent)=(99) is still referenced from table "c".', `Key (parent)=(${REDACTED}) is still referenced from table "c".`],
    ['Failing row contains (4, leak.victim@example.com, -5).', `Failing row contains (${REDACTED}).`],
    ['COPY rx, line 5, column c: "SSN078-05-1120"', `COPY rx, line 5, column c: ${REDACTED}`],
    ['COPY rx, line 1: "10\tleak.victim@example.com"', `COPY rx, line 1: ${REDACTED}`],
    ['value "99999999999" is out of range for type integer', `value ${REDACTED} is out of range for type integer`],
    ['date/time field value out of range: "2020-02-30"', `date/time field value out of range: ${REDACTED}`],
    ['invalid byte sequence for encoding "UTF8": 0xc3 0x28', `invalid byte sequence for encoding "UTF8": ${REDACTED}`],
    ['Token "secret" is invalid.', `Token ${REDACTED} is invalid.`],
  ])('%s', (text, expected) => {
    expect(scrubText(text)).toBe(expected);
    noValue(scrubText(text));
  });

  test('text with no value-bearing fragment is left alone (names, quoted identifiers, reasons)', () => {
    const text = 'public.t refused a row of key range (30, 40]: new row for relation "t" violates check constraint "c" (SQLSTATE 23514)';
    expect(scrubText(text)).toBe(text);
  });

  test('scrubDeep: strings in nested details', () => {
    expect(scrubDeep({ problems: ['Failing row contains (leak.victim@example.com)'], n: 3, nested: { why: 'Key (id)=(secret) already exists' } }))
      .toEqual({ problems: [`Failing row contains (${REDACTED})`], n: 3, nested: { why: `Key (id)=(${REDACTED}) already exists` } });
  });
});

describe('what leaves an activity', () => {
  test('a pg error becomes a plain retryable Error, described without values, message and stack alike', () => {
    const err = pgError({ code: '22P02', message: 'invalid input syntax for type bigint: "SSN078-05-1120"', where: 'COPY t, line 3, column ssn: "SSN078-05-1120"' });
    const safe = withoutValues(err) as Error;
    expect(safe).not.toBe(err);
    expect(safe).not.toBeInstanceOf(ApplicationFailure);
    expect(safe.message).toBe(`invalid input syntax for type bigint: ${REDACTED} (SQLSTATE 22P02, column ssn, COPY line 3)`);
    noValue(safe.stack ?? '');
    expect(safe.stack).toMatch(/^DatabaseError: invalid input syntax/);
  });

  test('an ApplicationFailure keeps its identity and type; message, details and a pg cause are cleaned', () => {
    const cause = pgError({ code: '23505', message: 'duplicate key value violates unique constraint "k"', detail: 'Key (email)=(dup@example.com) already exists.' });
    const failure = ApplicationFailure.create({ type: 'BadPlan', message: 'x: Key (email)=(dup@example.com) already exists.', nonRetryable: true, details: [{ problems: ['Failing row contains (leak.victim@example.com)'] }], cause });
    const out = withoutValues(failure) as ApplicationFailure;
    expect(out).toBe(failure);
    expect(out.type).toBe('BadPlan');
    expect(out.nonRetryable).toBe(true);
    noValue(JSON.stringify({ m: out.message, s: out.stack, d: out.details, c: (out.cause as Error).message, cs: (out.cause as Error).stack }));
  });

  test('a cancellation stays the same object (the worker reports it as cancelled)', () => {
    const c = new CancelledFailure('cancelled');
    expect(withoutValues(c)).toBe(c);
  });

  test('fatal() scrubs what a caller built from a raw message', () => {
    const f = fatal('DataRejected', 'refused: invalid input syntax for type bigint: "SSN078-05-1120"', { why: 'Failing row contains (leak.victim@example.com)' });
    noValue(JSON.stringify({ m: f.message, s: f.stack, d: f.details }));
    expect(f.message).toBe(`refused: invalid input syntax for type bigint: ${REDACTED}`);
  });
});
