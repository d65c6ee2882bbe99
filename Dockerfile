# syntax=docker/dockerfile:1
# Build a static binary, ship it on distroless as a non-root user.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/bot ./cmd/bot

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bot /bot
COPY app.yml /app.yml
ENV PORT=3000 DATA_DIR=/data
USER nonroot:nonroot
EXPOSE 3000
ENTRYPOINT ["/bot"]
CMD ["serve"]
