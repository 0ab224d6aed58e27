-- The login role Grafana connects as, in the read-only `c9_dashboard` group (run after
-- deploy/postgres/roles.sql, as the owner). Safe to run again: it resets the password.
--     psql -v ON_ERROR_STOP=1 -v pw="$GRAFANA_DB_PASSWORD" -f deploy/grafana/login-role.sql
SELECT format('CREATE ROLE grafana LOGIN PASSWORD %L IN ROLE c9_dashboard', :'pw')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'grafana') \gexec
SELECT format('ALTER ROLE grafana PASSWORD %L', :'pw') \gexec
