-- The profiles table the Empathy Ledger application expects.
CREATE TABLE public.profiles_v2 (
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
CREATE INDEX profiles_v2_email_idx ON public.profiles_v2 (email);
