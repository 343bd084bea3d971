-- Run once, when the postgres container creates its database (docker-entrypoint-initdb.d).
-- The owner role (POSTGRES_USER, `orders`) owns the tables: the migrate service runs the
-- migrations as it. The service's processes connect as `orders_app`, which may read and write
-- every table the owner creates, but not create, alter, drop or truncate one.
\getenv app_password POSTGRES_APP_PASSWORD
CREATE ROLE orders_app LOGIN PASSWORD :'app_password';
GRANT USAGE ON SCHEMA public TO orders_app;
ALTER DEFAULT PRIVILEGES FOR ROLE orders IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO orders_app;
ALTER DEFAULT PRIVILEGES FOR ROLE orders IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO orders_app;
