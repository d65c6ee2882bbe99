package aws

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/smithy-go"
)

// Error is a failed AWS call, or a wait on AWS that did not end well. It
// names the API and the resource, and says whether trying again can help.
type Error struct {
	API      string // e.g. "elasticloadbalancing:DeregisterTargets"
	Resource string // the instance, target group or command it was about
	Err      error
	perm     bool
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s on %s: %v", e.API, e.Resource, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Permanent reports whether the same call cannot succeed by being repeated
// (denied, invalid, not found). Throttling and service errors are not
// permanent; the SDK's retryer already retried them within its bounds.
func (e *Error) Permanent() bool { return e.perm }

// callError wraps err from api on resource and classifies it.
func callError(api, resource string, err error) error {
	if err == nil {
		return nil
	}
	return &Error{API: api, Resource: resource, Err: err, perm: permanent(err)}
}

// waitError is a wait that ended without the state it waited for; it is
// not permanent: the next attempt may find AWS done.
func waitError(api, resource string, format string, args ...any) error {
	return &Error{API: api, Resource: resource, Err: fmt.Errorf(format, args...)}
}

// permanentError is a failure no retry can fix (a bad template, a command
// that failed on the instance).
func permanentError(api, resource string, err error) error {
	return &Error{API: api, Resource: resource, Err: err, perm: true}
}

// errorCode is the AWS error code of err, or "" when err is nil or not an
// AWS API error.
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// permanent classifies an SDK error by its AWS error code.
func permanent(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false // a transport error: the network may come back
	}
	code := ae.ErrorCode()
	switch {
	case strings.Contains(code, "Throttl"), code == "RequestLimitExceeded",
		code == "TooManyRequestsException", code == "ServiceUnavailable",
		code == "ServiceUnavailableException", code == "Unavailable",
		code == "InternalError", code == "InternalFailure",
		code == "InternalServerError", code == "InvocationDoesNotExist",
		// Capacity comes back; a rule just deleted may still hold its
		// target group for a moment; Route 53 applies one change per
		// record at a time; two previews may race for one rule priority.
		code == "InsufficientInstanceCapacity", code == "ResourceInUse",
		code == "PriorRequestNotComplete", code == "PriorityInUse":
		return false
	case strings.HasPrefix(code, "AccessDenied"), code == "UnauthorizedOperation",
		code == "AuthFailure", code == "UnrecognizedClientException",
		code == "InvalidClientTokenId", code == "ExpiredToken":
		return true
	case strings.HasPrefix(code, "Validation"), strings.HasPrefix(code, "InvalidParameter"),
		strings.HasPrefix(code, "Invalid"), strings.HasSuffix(code, "NotFound"),
		strings.Contains(code, "NotFound"), strings.HasPrefix(code, "NoSuch"),
		code == "MissingParameter",
		// Quotas (TooManyTargetGroups, TooManyRules, …) do not lift by
		// themselves; TooManyRequestsException and RequestLimitExceeded were
		// matched above.
		strings.HasPrefix(code, "TooMany"), strings.HasSuffix(code, "LimitExceeded"):
		return true
	}
	return ae.ErrorFault() == smithy.FaultClient
}
