package main

import (
	"github.com/labstack/echo/v4"

	"github.com/shipbot/shipbot/internal/dashboard"
)

// mountDashboard serves the dashboard (home, /deploys/{id}, /audit, sign-in) on e,
// over the deploy store. Sign-in with GitHub needs the App's OAuth client
// (GITHUB_CLIENT_ID/SECRET); DASHBOARD_TOKEN gives operators token access;
// session cookies are keyed from WEBHOOK_SECRET.
func (b *bot) mountDashboard(e *echo.Echo) error {
	d, err := dashboard.New(dashboard.Options{
		Store:         b.store,
		PublicURL:     b.cfg.PublicURL,
		APIURL:        b.cfg.GitHubAPIURL,
		ClientID:      b.cfg.ClientID,
		ClientSecret:  b.cfg.ClientSecret,
		Token:         b.cfg.DashboardToken,
		SessionSecret: b.cfg.WebhookSecret,
		Logger:        b.log,
		Version:       version,
		Now:           b.now,
		Problems:      b.problems,
	})
	if err != nil {
		return err
	}
	h := echo.WrapHandler(d)
	e.GET("/", h)
	e.GET("/deploys/:id", h)
	e.GET("/audit", h)
	e.GET("/audit.jsonl", h)
	e.GET("/assets/*", h)
	e.Any("/auth/*", h)
	return nil
}
