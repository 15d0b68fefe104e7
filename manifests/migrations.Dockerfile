# kprov's migrations image: the kubernaut tree's goose migrations on top of the Postgres
# image, whose psql and pg_isready the migrations Job uses (manifests/migrations-job.yaml).
# Built with the kubernaut tree's migrations/ folder as the context; only its top level is
# copied (goose applies only that level too: subfolders hold archives and test data).
FROM postgres:16-alpine
COPY *.sql /migrations/
