/**
 * No row value leaves the database in a message. PostgreSQL quotes the value it refused in many places (`invalid
 * input syntax for type bigint: "..."`, DETAIL `Key (email)=(...) already exists.`, `Failing row contains (...)`,
 * CONTEXT `COPY t, line 5, column c: "..."`); Temporal history and the audit log are kept forever, so the text of a
 * PostgreSQL error is never passed on as it is. It is rebuilt from what names things, never values: the SQLSTATE,
 * pg's structured fields (schema, table, column, constraint, data type), the COPY line and column from the context,
 * and a message kept only where it matches a known value-free template (the quoted value replaced by <redacted>).
 * Anything else is told by its condition name. Pure: used by activities, workflows and tests alike.
 */

export const REDACTED = '<redacted>';

/** The fields of pg's DatabaseError this module reads. */
export interface PgErrorLike {
  code: string;
  message: string;
  severity?: string;
  detail?: string;
  where?: string;
  schema?: string;
  table?: string;
  column?: string;
  dataType?: string;
  constraint?: string;
}

/** An error raised by the PostgreSQL server (pg's DatabaseError, or anything shaped like it). */
export function isPgError(err: unknown): err is PgErrorLike {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as Record<string, unknown>;
  // `severity` sets it apart from Node's own errors, whose codes (EPIPE) can also be five capitals.
  return typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) && typeof e.message === 'string' && typeof e.severity === 'string';
}

/** Condition names (PostgreSQL's errcodes) of the classes whose messages quote values: data and integrity. */
const CONDITIONS: Record<string, string> = {
  '22000': 'data_exception', '2202E': 'array_subscript_error', '22021': 'character_not_in_repertoire',
  '22008': 'datetime_field_overflow', '22012': 'division_by_zero', '22005': 'error_in_assignment',
  '2200B': 'escape_character_conflict', '22022': 'indicator_overflow', '22015': 'interval_field_overflow',
  '2201E': 'invalid_argument_for_logarithm', '22014': 'invalid_argument_for_ntile_function',
  '22016': 'invalid_argument_for_nth_value_function', '2201F': 'invalid_argument_for_power_function',
  '2201G': 'invalid_argument_for_width_bucket_function', '22018': 'invalid_character_value_for_cast',
  '22007': 'invalid_datetime_format', '22019': 'invalid_escape_character', '2200D': 'invalid_escape_octet',
  '22025': 'invalid_escape_sequence', '22P06': 'nonstandard_use_of_escape_character',
  '22010': 'invalid_indicator_parameter_value', '22023': 'invalid_parameter_value',
  '22013': 'invalid_preceding_or_following_size', '2201B': 'invalid_regular_expression',
  '2201W': 'invalid_row_count_in_limit_clause', '2201X': 'invalid_row_count_in_result_offset_clause',
  '2202H': 'invalid_tablesample_argument', '2202G': 'invalid_tablesample_repeat',
  '22009': 'invalid_time_zone_displacement_value', '2200C': 'invalid_use_of_escape_character',
  '2200G': 'most_specific_type_mismatch', '22004': 'null_value_not_allowed',
  '22002': 'null_value_no_indicator_parameter', '22003': 'numeric_value_out_of_range',
  '2200H': 'sequence_generator_limit_exceeded', '22026': 'string_data_length_mismatch',
  '22001': 'string_data_right_truncation', '22011': 'substring_error', '22027': 'trim_error',
  '22024': 'unterminated_c_string', '2200F': 'zero_length_character_string', '22P01': 'floating_point_exception',
  '22P02': 'invalid_text_representation', '22P03': 'invalid_binary_representation', '22P04': 'bad_copy_file_format',
  '22P05': 'untranslatable_character', '2200L': 'not_an_xml_document', '2200M': 'invalid_xml_document',
  '2200N': 'invalid_xml_content', '2200S': 'invalid_xml_comment', '2200T': 'invalid_xml_processing_instruction',
  '22030': 'duplicate_json_object_key_value', '22031': 'invalid_argument_for_sql_json_datetime_function',
  '22032': 'invalid_json_text', '22033': 'invalid_sql_json_subscript', '22034': 'more_than_one_sql_json_item',
  '22035': 'no_sql_json_item', '22036': 'non_numeric_sql_json_item', '22037': 'non_unique_keys_in_a_json_object',
  '22038': 'singleton_sql_json_item_required', '22039': 'sql_json_array_not_found', '2203A': 'sql_json_member_not_found',
  '2203B': 'sql_json_number_not_found', '2203C': 'sql_json_object_not_found', '2203D': 'too_many_json_array_elements',
  '2203E': 'too_many_json_object_members', '2203F': 'sql_json_scalar_required',
  '2203G': 'sql_json_item_cannot_be_cast_to_target_type',
  '23000': 'integrity_constraint_violation', '23001': 'restrict_violation', '23502': 'not_null_violation',
  '23503': 'foreign_key_violation', '23505': 'unique_violation', '23514': 'check_violation', '23P01': 'exclusion_violation',
  P0001: 'raise_exception', P0004: 'assert_failure',
};

const CLASSES: Record<string, string> = {
  '09': 'triggered_action_exception', 20: 'case_not_found', 22: 'data_exception', 23: 'integrity_constraint_violation',
  '2F': 'sql_routine_exception', 38: 'external_routine_exception', 39: 'external_routine_invocation_exception',
  HV: 'fdw_error', P0: 'plpgsql_error',
};

/**
 * Classes whose messages name objects, settings and states, never a row value: connections, features,
 * transactions, authorization, syntax and access (the SQL is ours or the plan's, not row data), resources,
 * program limits, object state, operator intervention, system and internal errors. Kept as PostgreSQL wrote them.
 */
const VERBATIM_CLASSES = new Set(['08', '0A', '0B', '0L', '0P', '21', '24', '25', '26', '27', '28', '2B', '2D', '34', '3B', '3D', '3F', '40', '42', '44', '53', '54', '55', '57', '58', '72', 'F0', 'XX']);
/** PL/pgSQL errors that are not user text (RAISE and ASSERT are, and may carry anything). */
const VERBATIM_CODES = new Set(['P0002', 'P0003', '2F005', '2F002', '2F003', '2F004', '20000']);

/** A name PostgreSQL prints in double quotes (at most NAMEDATALEN - 1 bytes, so at most 63 characters). */
const NAME = '"[^"]{1,63}"';
/** A type as format_type prints it: `bigint`, `character varying(10)`, `public.mood`, `"Odd"[]`, `timestamp(3) with time zone`. */
const TYPE = '(?:[A-Za-z_][\\w$]*|"[^"]{1,63}")(?:\\.(?:[A-Za-z_][\\w$]*|"[^"]{1,63}"))?(?: [a-z]+)*(?:\\(\\d+(?:,\\d+)?\\))?(?: [a-z]+)*(?:\\[\\])*';

interface Template {
  re: RegExp;
  /** The message to keep; by default the whole match (a message with no value in it). */
  keep?: (m: RegExpMatchArray) => string;
}

const t = (source: string, keep?: Template['keep']): Template => ({ re: new RegExp(`^${source}$`), keep });
/** `<fixed words>: "<value>"` (or with no value): the words are kept, the value redacted. */
const quotedValue = (prefix: string): Template => ({
  re: new RegExp(`^(${prefix})(: "[\\s\\S]*")?$`),
  keep: (m) => `${m[1]}${m[2] ? `: ${REDACTED}` : ''}`,
});

/** Messages of classes 22 and 23 with a known shape; the value, where there is one, replaced by <redacted>. */
const TEMPLATES: Template[] = [
  quotedValue(`invalid input syntax for type ${TYPE}`),
  quotedValue(`invalid input syntax for (?:integer|bigint|smallint|type numeric)`),
  quotedValue(`invalid input value for enum ${TYPE}`),
  quotedValue(`(?:date/time field value|timestamp|date|time|interval|time zone displacement|interval field value) out of range`),
  quotedValue(`malformed array literal|malformed range literal|malformed record literal|invalid hexadecimal digit|invalid hexadecimal data: odd number of digits|invalid base64 end sequence|invalid symbol`),
  t(`value "[\\s\\S]*" is out of range for type (${TYPE})`, (m) => `value ${REDACTED} is out of range for type ${m[1]}`),
  t(`time zone "[\\s\\S]*" not recognized`, () => `time zone ${REDACTED} not recognized`),
  t(`invalid byte sequence for encoding ("[\\w-]{1,32}"): [\\s\\S]*`, (m) => `invalid byte sequence for encoding ${m[1]}: ${REDACTED}`),
  t(`character with byte sequence [\\s\\S]* in encoding ("[\\w-]{1,32}") has no equivalent in encoding ("[\\w-]{1,32}")`,
    (m) => `character with byte sequence ${REDACTED} in encoding ${m[1]} has no equivalent in encoding ${m[2]}`),
  t(`invalid regular expression: [\\s\\S]*`, () => `invalid regular expression: ${REDACTED}`),
  t(`value too long for type ${TYPE}`),
  t(`(?:numeric field overflow|smallint out of range|integer out of range|bigint out of range|division by zero|` +
    `timestamp out of range|date out of range|interval out of range|cannot take logarithm of zero|` +
    `cannot take logarithm of a negative number|zero raised to a negative power is undefined|` +
    `extra data after last expected column|incorrect binary data format|unterminated CSV quoted field|` +
    `literal carriage return found in data|literal newline found in data|end-of-copy marker corrupt|` +
    `null value not allowed|invalid input syntax for type json|unsupported Unicode escape sequence|` +
    `array subscript out of range|value out of range: (?:overflow|underflow)|bit string length \\d+ does not match type bit\\(\\d+\\)|` +
    `bit string too long for type bit varying\\(\\d+\\))`),
  t(`missing data for column ${NAME}`),
  t(`row is too big: size \\d+, maximum size \\d+`),
  // Class 23: the constraint and relation are named, the offending row is in DETAIL (never passed on).
  t(`duplicate key value violates unique constraint ${NAME}`),
  t(`conflicting key value violates exclusion constraint ${NAME}`),
  t(`could not create unique index ${NAME}`),
  t(`could not create exclusion constraint ${NAME}`),
  t(`new row for relation ${NAME} violates check constraint ${NAME}`),
  t(`new row for relation ${NAME} violates partition constraint`),
  t(`check constraint ${NAME} of relation ${NAME} is violated by some row`),
  t(`partition constraint of relation ${NAME} is violated by some row`),
  t(`updated partition constraint for default partition ${NAME} would be violated by some row`),
  t(`value for domain ${TYPE} violates check constraint ${NAME}`),
  t(`null value in column ${NAME}(?: of relation ${NAME})? violates not-null constraint`),
  t(`domain ${TYPE} does not allow null values`),
  t(`column ${NAME} of relation ${NAME} contains null values`),
  t(`insert or update on table ${NAME} violates foreign key constraint ${NAME}`),
  t(`update or delete on table ${NAME} violates foreign key constraint ${NAME} on table ${NAME}`),
];

/** DETAIL lines that are value-free and help: how a numeric overflows. */
const KEPT_DETAILS = [
  /^A field with precision \d+, scale \d+ must round to an absolute value less than (?:10\^-?\d+|1)\.$/,
  /^A field with precision \d+, scale \d+ cannot hold an infinite value\.$/,
];

function conditionOf(code: string): string {
  return CONDITIONS[code] ?? CLASSES[code.slice(0, 2)] ?? 'error';
}

/** The primary message as it may be told: verbatim for value-free classes, a template's redaction, or the condition. */
export function redactedMessage(err: PgErrorLike): string {
  const cls = err.code.slice(0, 2);
  if (VERBATIM_CLASSES.has(cls) || VERBATIM_CODES.has(err.code)) return err.message;
  for (const { re, keep } of TEMPLATES) {
    const m = err.message.match(re);
    if (m) return keep ? keep(m) : m[0];
  }
  return `${conditionOf(err.code)} (message withheld: it may quote a row value)`;
}

/** `COPY t, line 5, column c: "value"` → where in the COPY stream, without the value. */
function copyContext(where: string | undefined): { line?: string; column?: string } {
  const first = (where ?? '').split('\n').find((l) => l.startsWith('COPY '));
  const m = first?.match(/^COPY [^,\n]{1,200}, line (\d+)(?:, column ([^:\n]{1,63}))?(?::|$)/);
  return m ? { line: m[1], ...(m[2] ? { column: m[2] } : {}) } : {};
}

const present = (v: unknown): v is string => typeof v === 'string' && v.length > 0;

/** The column PostgreSQL ties the error to: its column field, or the column COPY was reading. */
export function pgErrorColumn(err: PgErrorLike): string | undefined {
  return present(err.column) ? err.column : copyContext(err.where).column;
}

/**
 * The error as it may leave the process: the redacted message, then SQLSTATE and what pg names (table, column,
 * constraint, data type; for COPY the line of the stream and the column; `known.column` where the caller found
 * out which column it was), e.g.
 * `invalid input syntax for type bigint: <redacted> (SQLSTATE 22P02, column ssn, COPY line 7)`.
 */
export function describePgError(err: PgErrorLike, known: { column?: string } = {}): string {
  const copy = copyContext(err.where);
  const column = pgErrorColumn(err) ?? known.column;
  const table = present(err.table) ? (present(err.schema) ? `${err.schema}.${err.table}` : err.table) : undefined;
  const parts = [
    `SQLSTATE ${err.code}`,
    ...(table ? [`table ${table}`] : []),
    ...(column ? [`column ${column}`] : []),
    ...(present(err.constraint) ? [`constraint ${err.constraint}`] : []),
    ...(present(err.dataType) ? [`type ${err.dataType}`] : []),
    ...(copy.line ? [`COPY line ${copy.line}`] : []),
  ];
  const detail = present(err.detail) && KEPT_DETAILS.some((re) => re.test(err.detail!)) ? ` ${err.detail}` : '';
  return `${redactedMessage(err)}${detail} (${parts.join(', ')})`;
}

/**
 * Last line of defence for text already built (a message someone made from a raw error, a reason, audit details):
 * the value-bearing fragments PostgreSQL writes are cut out wherever they appear. The structured path above is
 * what messages should use; this only catches what slipped past it, and over-redacts rather than under.
 */
const SCRUBS: [RegExp, string][] = [
  // `<known words>: "value"` up to the last quote on the line (a value may itself hold quotes).
  [/((?:invalid input syntax for (?:type )?[^:\n"]{1,128}|invalid input value for enum [^:\n"]{1,128}|(?:date\/time field value|timestamp|date|time|interval|time zone displacement) out of range|malformed (?:array|range|record) literal|invalid hexadecimal digit|invalid symbol)): "[^\n]*"/g, `$1: ${REDACTED}`],
  [/value "[^\n]*" is out of range for type/g, `value ${REDACTED} is out of range for type`],
  [/time zone "[^\n]*" not recognized/g, `time zone ${REDACTED} not recognized`],
  [/(invalid byte sequence for encoding "[\w-]{1,32}"): (?:0x[0-9a-f]{2} ?)+/g, `$1: ${REDACTED}`],
  [/character with byte sequence (?:0x[0-9a-f]{2} ?)+/g, `character with byte sequence ${REDACTED} `],
  [/\bKey \(([^()\n]{1,1000})\)=\([^\n]*\)( already exists| is not present in table| is still referenced from table| is duplicated| conflicts with existing key)/g, `Key ($1)=(${REDACTED})$2`],
  [/\bKey \(([^()\n]{1,1000})\)=\([^\n]*\) conflicts with key \([^\n]*\)/g, `Key ($1)=(${REDACTED}) conflicts with key (${REDACTED})`],
  [/Failing row contains \([^\n]*\)/g, `Failing row contains (${REDACTED})`],
  [/(COPY [^,\n]{1,200}, line \d+(?:, column [^:\n]{1,63})?): [^\n]*/g, `$1: ${REDACTED}`],
  [/Token "[^\n]*" is invalid/g, `Token ${REDACTED} is invalid`],
  [/(invalid regular expression): [^\n]*/g, `$1: ${REDACTED}`],
];

export function scrubText(text: string): string {
  return SCRUBS.reduce((s, [re, by]) => s.replace(re, by), text);
}

/** Strings anywhere in a JSON-like value, scrubbed (audit details, failure details). */
export function scrubDeep<T>(value: T): T {
  if (typeof value === 'string') return scrubText(value) as T;
  if (Array.isArray(value)) return value.map((v) => scrubDeep(v)) as T;
  if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, scrubDeep(v)])) as T;
  }
  return value;
}

/** What to write where an error's message would go: a PostgreSQL error described without values, any other scrubbed. */
export function errorText(err: unknown): string {
  if (isPgError(err)) return describePgError(err);
  return scrubText(err instanceof Error ? err.message : String(err));
}
