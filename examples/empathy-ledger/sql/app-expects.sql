-- What the Empathy Ledger application expects to find in schema public: the `profiles` table it reads.
-- Names are unqualified: `safeshift drift --expect` applies this to a scratch schema and compares it with the
-- live schema (--schema, default public). Before the demo migration it reports the mismatch the migration fixes.
CREATE TABLE profiles (
  id                  uuid PRIMARY KEY,
  display_name        text NOT NULL,
  legal_name          text NOT NULL,
  email               text,
  avatar_url          text,
  bio                 text,
  cultural_background text,
  pronouns            text,
  is_elder            boolean NOT NULL DEFAULT false,
  consent             jsonb NOT NULL DEFAULT '{}',
  metadata            jsonb NOT NULL DEFAULT '{}',
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX profiles_email_idx ON profiles (email);
