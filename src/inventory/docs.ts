/**
 * The shape of `safeshift inventory --json`. Every list is ordered by name (C collation), every object has its
 * keys in one order, and nothing depends on the session or the clock, so two runs on an unchanged database are
 * byte-for-byte equal. Names inside a schema's lists are bare; names pointing elsewhere are schema-qualified.
 */

export interface ColumnDoc {
  name: string;
  type: string;
  notNull: boolean;
  default: string | null;
  /** Expression of a stored generated column. */
  generated: string | null;
  identity: 'always' | 'by default' | null;
  collation: string | null;
  comment: string | null;
}

export interface ConstraintDoc {
  name: string;
  type: 'primary key' | 'unique' | 'foreign key' | 'check' | 'exclusion' | 'not null' | 'trigger';
  definition: string;
  /** Inherited from a parent (a partition's copy of its partitioned table's constraint): dropped with it. */
  inherited: boolean;
}

export interface IndexDoc {
  name: string;
  definition: string;
  primary: boolean;
  unique: boolean;
  /** The constraint (primary key, unique, exclusion) this index enforces, if any. */
  constraint: string | null;
}

export interface TriggerDoc {
  name: string;
  definition: string;
  enabled: 'origin' | 'always' | 'replica' | 'disabled';
}

export interface PolicyDoc {
  name: string;
  command: string;
  permissive: boolean;
  roles: string[];
  using: string | null;
  withCheck: string | null;
}

/** One grantee's privileges, from an ACL as stored (owner's own entry included once anything was granted). */
export interface GrantDoc {
  grantee: string;
  privileges: string[];
}

export interface PartitionDoc {
  /** Schema-qualified: a partition may live in another schema than its parent. */
  name: string;
  /** `FOR VALUES ...` or `DEFAULT` (pg_get_expr of relpartbound). */
  bound: string;
}

export interface TableDoc {
  name: string;
  kind: 'table' | 'partitioned table' | 'foreign table';
  owner: string;
  comment: string | null;
  /** A partitioned table: its key (`pg_get_partkeydef`, e.g. `RANGE (at)`) and its direct partitions. */
  partitioning: { key: string; partitions: PartitionDoc[] } | null;
  /** A partition: its parent (schema-qualified) and its bound. Partitions are listed as tables of their own. */
  partitionOf: { parent: string; bound: string } | null;
  rls: { enabled: boolean; forced: boolean };
  columns: ColumnDoc[];
  constraints: ConstraintDoc[];
  indexes: IndexDoc[];
  triggers: TriggerDoc[];
  policies: PolicyDoc[];
  grants: GrantDoc[];
  publications: string[];
  /**
   * What `rows` and `bytes` measure: the table itself, or (a partitioned table, which holds no rows itself) the
   * sum over its whole partition tree, every level.
   */
  measuredOver: 'table' | 'partition tree';
  /** reltuples (null: never analyzed; for a partition tree, none of its partitions analyzed); exact only with `exactCounts`. */
  rows: { estimate: number | null; exact?: number };
  bytes: { table: number; indexes: number; total: number };
}

export interface ViewDoc {
  name: string;
  kind: 'view' | 'materialized view';
  owner: string;
  comment: string | null;
  columns: { name: string; type: string }[];
  definition: string;
  /** Relations the view reads, schema-qualified. */
  dependsOn: string[];
  /** A materialized view's indexes (a plain view has none). */
  indexes: IndexDoc[];
  /** A materialized view's storage; null for a plain view. */
  materialized: { populated: boolean; rows: { estimate: number | null }; bytes: { table: number; indexes: number; total: number } } | null;
  grants: GrantDoc[];
}

export interface SequenceDoc {
  name: string;
  type: string;
  start: string;
  increment: string;
  min: string;
  max: string;
  cache: string;
  cycle: boolean;
  /** `schema.table.column` for owned sequences (serial, identity). */
  ownedBy: string | null;
}

interface TypeBase {
  name: string;
  owner: string;
  comment: string | null;
}

export interface EnumDoc extends TypeBase {
  kind: 'enum';
  /** In the enum's own order (enumsortorder), not alphabetically. */
  labels: string[];
}

export interface DomainDoc extends TypeBase {
  kind: 'domain';
  baseType: string;
  default: string | null;
  notNull: boolean;
  collation: string | null;
  /** CHECK constraints, by name. */
  checks: { name: string; definition: string }[];
}

export interface CompositeDoc extends TypeBase {
  kind: 'composite';
  /** In declaration order. */
  fields: { name: string; type: string; collation: string | null }[];
}

export interface RangeDoc extends TypeBase {
  kind: 'range';
  subtype: string;
}

/** Types created with CREATE TYPE / CREATE DOMAIN; tables' row types, arrays and extensions' types are not listed. */
export type TypeDoc = EnumDoc | DomainDoc | CompositeDoc | RangeDoc;

export interface FunctionDoc {
  name: string;
  kind: 'function' | 'procedure' | 'aggregate' | 'window';
  /** Identity arguments (`pg_get_function_identity_arguments`): with the name, what tells overloads apart. */
  signature: string;
  /** Arguments as declared, with defaults and OUT parameters (`pg_get_function_arguments`). */
  arguments: string;
  /** Result type (`pg_get_function_result`); null for a procedure. */
  result: string | null;
  language: string;
  volatility: 'immutable' | 'stable' | 'volatile';
  strict: boolean;
  securityDefiner: boolean;
  parallel: 'safe' | 'restricted' | 'unsafe';
  /** `SET` clauses as stored in proconfig, e.g. `search_path=""`. */
  config: string[];
  /**
   * SHA-256 of the body as stored (prosrc; for a SQL-standard `BEGIN ATOMIC` body, PostgreSQL's own rendering
   * of the function), hex; null for an aggregate. A hash, not the text: it diffs in one line and says "changed",
   * and the body itself belongs to the application's source, not to a schema document.
   */
  bodySha256: string | null;
  owner: string;
  comment: string | null;
  /** As stored: none listed means the defaults (the owner, and EXECUTE for PUBLIC). */
  grants: GrantDoc[];
}

export interface SchemaDoc {
  name: string;
  owner: string;
  comment: string | null;
  /** Tables, partitions included (each with `partitionOf`). */
  tables: TableDoc[];
  views: ViewDoc[];
  sequences: SequenceDoc[];
  types: TypeDoc[];
  /** Functions, procedures, aggregates; ordered by name, then signature. Extensions' own are not listed. */
  functions: FunctionDoc[];
}

export interface PublicationDoc {
  name: string;
  allTables: boolean;
  operations: string[];
  tables: string[];
}

export interface ExtensionDoc {
  name: string;
  version: string;
  schema: string;
}

/** A role (never its password): attributes and the roles it is a member of. PostgreSQL's own `pg_*` roles are left out. */
export interface RoleDoc {
  name: string;
  login: boolean;
  superuser: boolean;
  createRole: boolean;
  createDb: boolean;
  replication: boolean;
  bypassRls: boolean;
  inherit: boolean;
  /** -1: no limit. */
  connectionLimit: number;
  /** `inherit` and `set` are per membership from PostgreSQL 16 on; null before (the member's own `inherit` applies). */
  memberOf: { role: string; admin: boolean; inherit: boolean | null; set: boolean | null }[];
}

/** ALTER DEFAULT PRIVILEGES: what `role` creates (in `schema`, or anywhere when null) gets these grants. */
export interface DefaultPrivilegeDoc {
  role: string;
  schema: string | null;
  objects: 'tables' | 'sequences' | 'functions' | 'types' | 'schemas' | 'large objects';
  /** As stored in pg_default_acl: for all schemas the whole ACL, for one schema what is added to the defaults. */
  grants: GrantDoc[];
}

export interface Inventory {
  format: 'safeshift-inventory/1';
  server: string;
  database: string;
  schemas: SchemaDoc[];
  /** Database-wide, listed whatever `schemas` selects. */
  publications: PublicationDoc[];
  extensions: ExtensionDoc[];
  /** Cluster-wide. */
  roles: RoleDoc[];
  /** Those for all schemas and those for the selected schemas. */
  defaultPrivileges: DefaultPrivilegeDoc[];
}
