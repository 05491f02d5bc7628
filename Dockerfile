# walhook's image: a static binary on a distroless base (CA certificates,
# no shell), running as a non-root user.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t walhook .
#   docker run --rm walhook version
#
# CI runs the build line below as it is (.ci/run), without Docker.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/walhook ./cmd/walhook

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/walhook /usr/local/bin/walhook
# 65532 is distroless's "nonroot"; numeric, so that Kubernetes can verify
# runAsNonRoot.
USER 65532:65532
EXPOSE 9187
ENTRYPOINT ["/usr/local/bin/walhook"]
CMD ["run", "-config", "/etc/walhook/walhook.yaml"]
