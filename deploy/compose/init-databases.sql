-- Run by the postgres image once, on an empty data volume (docker-entrypoint-initdb.d).
-- One database per service: no service reads another's tables (ARCHITECTURE.md).
-- The services still to come are created now, so adding one later needs no `docker compose down -v`.
CREATE DATABASE intake;
CREATE DATABASE sla;
CREATE DATABASE feedback;
CREATE DATABASE risk;
CREATE DATABASE appraisal;
