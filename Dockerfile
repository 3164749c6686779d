# Multi-stage build: a release binary on a small runtime image, run as a
# non-root user, config mounted at /etc/portcullis/portcullis.toml.
#
#   docker build -t portcullis .
#   docker run -p 4180:4180 \
#     -v $PWD/config/portcullis.toml:/etc/portcullis/portcullis.toml:ro \
#     -e PORTCULLIS_SESSION_SECRET=... -e GOOGLE_CLIENT_ID=... -e GOOGLE_CLIENT_SECRET=... \
#     -e PORTCULLIS_PUBLIC_URL=https://app.example.com portcullis

FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cargo wants every declared target to exist; they are not built here.
COPY examples ./examples
COPY tests ./tests
COPY benches ./benches
COPY config ./config
RUN cargo build --release --locked --bin portcullis \
 && strip target/release/portcullis

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin portcullis \
 && mkdir -p /etc/portcullis
COPY --from=build /src/target/release/portcullis /usr/local/bin/portcullis
USER 10001:10001
ENV PORTCULLIS_CONFIG=/etc/portcullis/portcullis.toml
EXPOSE 4180
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["run"]
