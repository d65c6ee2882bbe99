package gh

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	"github.com/google/go-github/v60/github"
)

// Error is a failed GitHub call. The worker asks Permanent() (through
// errors.As on interface{ Permanent() bool }) to choose between retrying
// the job and giving up on it.
type Error struct {
	Op      string // what the bot was doing, e.g. "create deployment on acme/web"
	Status  int    // HTTP status; 0 when no answer came
	Message string // GitHub's message, with its validation details
	// RetryAfter is how long GitHub asked us to wait (rate limits); 0 if it
	// did not say.
	RetryAfter time.Duration
	Err        error // the underlying error
	// asUser: the call carried a user's token (User), not the App's:
	// there is no job to retry and no App credential to check.
	asUser bool
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("github: ")
	b.WriteString(e.Op)
	b.WriteString(": ")
	switch {
	case e.Status == 0:
		fmt.Fprintf(&b, "no answer from GitHub (%v); check GITHUB_API_URL and the network", e.Err)
		if !e.asUser {
			b.WriteString(" — the job will be retried")
		}
		return b.String()
	case e.Message != "":
		fmt.Fprintf(&b, "GitHub answered %d: %s", e.Status, e.Message)
	default:
		fmt.Fprintf(&b, "GitHub answered %d %s", e.Status, http.StatusText(e.Status))
	}
	if hint := e.hint(); hint != "" {
		b.WriteString(" — ")
		b.WriteString(hint)
	}
	return b.String()
}

func (e *Error) hint() string {
	switch {
	case e.rateLimited():
		if e.RetryAfter > 0 {
			return fmt.Sprintf("rate limited; retry after %s", e.RetryAfter.Round(time.Second))
		}
		return "rate limited; retry later"
	case e.Status == http.StatusUnauthorized && e.asUser:
		return "GitHub no longer accepts the user's token: sign in again"
	case e.Status >= 500 && e.asUser:
		return ""
	case e.Status == http.StatusUnauthorized:
		return "GitHub refused the App's credentials: check APP_ID and PRIVATE_KEY (and that the App was not deleted)"
	case e.Status == http.StatusForbidden:
		return "the App lacks a permission for this: grant it in the App's settings and accept it on the installation"
	case e.Status == http.StatusNotFound:
		return "not found, or the App is not installed on the repository (or cannot see it)"
	case e.Status == http.StatusUnprocessableEntity, e.Status == http.StatusBadRequest:
		return "GitHub refused the request as invalid; retrying will not help"
	case e.Status == http.StatusConflict:
		return "GitHub reports a conflict; retrying will not help"
	case e.Status >= 500:
		return "GitHub failed after retries; the job will be retried"
	}
	return ""
}

func (e *Error) Unwrap() error { return e.Err }

// Permanent reports whether retrying cannot help: a 4xx other than a rate
// limit or a timeout. Network errors, 5xx and rate limits are worth another
// try later.
func (e *Error) Permanent() bool {
	if e.Status < 400 || e.Status >= 500 || e.rateLimited() {
		return false
	}
	return e.Status != http.StatusRequestTimeout
}

func (e *Error) rateLimited() bool {
	if e.Status == http.StatusTooManyRequests {
		return true
	}
	var rl *github.RateLimitError
	var al *github.AbuseRateLimitError
	return e.Status == http.StatusForbidden && (errors.As(e.Err, &rl) || errors.As(e.Err, &al) || e.RetryAfter > 0)
}

// wrap turns what go-github returned into *Error (nil stays nil).
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	e := &Error{Op: op, Err: err}
	var (
		rl  *github.RateLimitError
		al  *github.AbuseRateLimitError
		er  *github.ErrorResponse
		hte *ghinstallation.HTTPError
	)
	switch {
	case errors.As(err, &rl):
		e.Status, e.Message = http.StatusForbidden, rl.Message
		if rl.Response != nil {
			e.Status = rl.Response.StatusCode
		}
		e.RetryAfter = max(0, time.Until(rl.Rate.Reset.Time))
	case errors.As(err, &al):
		e.Status, e.Message = http.StatusForbidden, al.Message
		if al.Response != nil {
			e.Status = al.Response.StatusCode
		}
		if al.RetryAfter != nil {
			e.RetryAfter = *al.RetryAfter
		}
	case errors.As(err, &er):
		e.Message = errorMessage(er)
		if er.Response != nil {
			e.Status = er.Response.StatusCode
			if d, ok := retryAfter(er.Response); ok {
				e.RetryAfter = d
			}
		}
	case errors.As(err, &hte):
		// Minting the installation token failed.
		e.Op += " (minting the installation token)"
		if hte.Response != nil {
			e.Status = hte.Response.StatusCode
			e.Message = hte.Message
		}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// Status 0: retryable; the caller is shutting down or out of time.
	}
	return e
}

// errorMessage is GitHub's message with its validation details, e.g.
// "Validation Failed: state is not included in the list".
func errorMessage(er *github.ErrorResponse) string {
	msg := er.Message
	var details []string
	for _, d := range er.Errors {
		switch {
		case d.Message != "":
			details = append(details, d.Message)
		case d.Field != "":
			details = append(details, fmt.Sprintf("%s %s is %s", d.Resource, d.Field, d.Code))
		case d.Code != "":
			details = append(details, d.Code)
		}
	}
	if len(details) > 0 {
		msg += ": " + strings.Join(details, "; ")
	}
	return msg
}
