-- A profiles table in the shape the live Empathy Ledger database has, not the one the application expects.
-- Generated, not real people. :rows rows (psql variable; the demo passes it as $1).
-- The table comment marks it as demo data: the demo refuses to replace a profiles table without it.
CREATE TABLE public.profiles (
  id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  full_name           text NOT NULL,
  preferred_name      text,
  email               text,
  avatar              text,
  bio                 text,
  cultural_background text,
  pronouns            text,
  elder_status        text NOT NULL DEFAULT 'no' CHECK (elder_status IN ('yes', 'no', 'unknown')),
  consent_given       boolean NOT NULL DEFAULT false,
  metadata            jsonb NOT NULL DEFAULT '{}',
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE public.profiles IS 'safeshift demo seed';

INSERT INTO public.profiles (id, full_name, preferred_name, email, avatar, bio, cultural_background, pronouns,
                             elder_status, consent_given, metadata, created_at, updated_at)
SELECT md5('profile' || g)::uuid,
       (ARRAY['Aunty', 'Uncle', 'Dr', '', '', ''])[1 + g % 6] || ' ' ||
         (ARRAY['Mia', 'Jarrah', 'Kirra', 'Tom', 'Ngaio', 'Lena', 'Sam', 'Aroha', 'Ben', 'Yindi'])[1 + g % 10] || ' ' ||
         (ARRAY['Walker', 'Nguyen', 'Smith', 'Te Rangi', 'O''Brien', 'Müller', 'Roberts', 'Hohaia'])[1 + (g / 10) % 8],
       CASE WHEN g % 4 = 0 THEN NULL WHEN g % 4 = 1 THEN '' ELSE (ARRAY['Mimi', 'JJ', 'Kiki', 'Tommy'])[1 + g % 4] END,
       CASE WHEN g % 17 = 0 THEN NULL ELSE 'Storyteller' || g || '@Example.ORG' END,
       CASE WHEN g % 3 = 0 THEN NULL ELSE 'https://cdn.example.org/avatars/' || g || '.jpg' END,
       CASE WHEN g % 5 = 0 THEN NULL ELSE repeat('Shares stories of country, family and community. ', 1 + g % 6) END,
       (ARRAY['Yolŋu', 'Wiradjuri', 'Māori', 'Torres Strait Islander', 'Noongar', NULL])[1 + g % 6],
       (ARRAY['she/her', 'he/him', 'they/them', NULL])[1 + g % 4],
       (ARRAY['yes', 'no', 'no', 'unknown'])[1 + g % 4],
       g % 9 <> 0,
       jsonb_build_object('source', 'legacy-import', 'batch', g / 1000, 'tags', jsonb_build_array('t' || g % 7)),
       timestamptz '2021-03-01 00:00:00+00' + g * interval '97 seconds',
       timestamptz '2021-03-01 00:00:00+00' + g * interval '131 seconds'
  FROM generate_series(1, $1::int) AS g;
ANALYZE public.profiles;
