// Package logctx carries the request- or job-scoped *slog.Logger in a
// context, so that every line about a delivery or a job has its delivery id,
// installation, repository and job id without passing loggers around.
package logctx

import (
	"context"
	"log/slog"
)

type key struct{}

// With returns ctx carrying l.
func With(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, key{}, l)
}

// From returns the logger in ctx, or slog.Default() when there is none.
func From(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(key{}).(*slog.Logger); ok {
		return l
	}
	return slog.Default()
}

// Add returns ctx whose logger has args added.
func Add(ctx context.Context, args ...any) context.Context {
	return With(ctx, From(ctx).With(args...))
}
