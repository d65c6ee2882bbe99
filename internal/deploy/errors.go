package deploy

import (
	"errors"
	"fmt"
	"time"

	"github.com/shipbot/shipbot/internal/store/record"
)

// stepError is a step of a batch that failed: where, the error, and the
// reason people read. Its Error is for errors.Is and operators' logs; what
// GitHub and the deploy page show is reason, said by report.Reason.
type stepError struct {
	batch    int
	instance string
	step     string
	err      error
	reason   record.Reason
}

func (e *stepError) Error() string {
	if e.instance == "" {
		return fmt.Sprintf("%s: %v", e.step, e.err)
	}
	return fmt.Sprintf("%s %s: %v", e.step, e.instance, e.err)
}

func (e *stepError) Unwrap() error { return e.err }

// failure is a copy of the step's reason, to keep.
func (e *stepError) failure() *record.Reason {
	r := e.reason
	return &r
}

// healthTimeout: an instance did not pass HealthyAfter checks in a row in time.
type healthTimeout struct {
	passes int
	last   error // the last failed check; nil if it only passed too few times
}

func (e *healthTimeout) Error() string {
	if e.last != nil {
		return "health timeout: " + e.last.Error()
	}
	return "health timeout"
}
func (e *healthTimeout) Unwrap() error { return e.last }

// confirmError: the check right after admission failed.
type confirmError struct{ err error }

func (e *confirmError) Error() string { return e.err.Error() }
func (e *confirmError) Unwrap() error { return e.err }

// bakeError: a check during the bake failed.
type bakeError struct {
	into, bake time.Duration
	err        error
}

func (e *bakeError) Error() string { return e.err.Error() }
func (e *bakeError) Unwrap() error { return e.err }

// analysisError: the analysis of a baking batch broke a limit, or could
// not read a source; why says which (SPEC §6.8).
type analysisError struct{ why record.Reason }

func (e *analysisError) Error() string { return "analysis: " + string(e.why.Kind) }

// panicError: a driver panicked on an instance; each turned the panic into
// the instance's failure.
type panicError struct {
	instance string
	value    any
}

func (e *panicError) Error() string {
	return fmt.Sprintf("driver panicked on %s: %v", e.instance, e.value)
}

// errCannotSurge: the plan asks for a surge of a driver that is no Surger
// (PlanRollout asks only when it is one).
var errCannotSurge = errors.New("deploy: the plan asks for an extra instance and the driver cannot start one")

// stepReason is the reason people read for step failing with err on
// instance id (""), putting rel on it.
func (r *run) stepReason(step, id string, rel Release, err error) record.Reason {
	h := r.env.Health
	switch e := err.(type) {
	case *healthTimeout:
		why := record.Reason{Kind: record.ReasonHealthTimeout, Instance: id, Path: h.Path, Want: h.HealthyAfter, Duration: h.Timeout, Release: rel.SHA}
		if e.last != nil {
			return withErr(why, e.last)
		}
		why.Count = e.passes
		return why
	case *confirmError:
		return withErr(record.Reason{Kind: record.ReasonConfirmFailed, Instance: id, Path: h.Path, Release: rel.SHA}, e.err)
	case *bakeError:
		return withErr(record.Reason{Kind: record.ReasonBakeFailed, Instance: id, Path: h.Path, Elapsed: e.into, Duration: e.bake, Release: rel.SHA}, e.err)
	case *analysisError:
		return e.why
	}
	if errors.Is(err, errCannotSurge) {
		return record.Reason{Kind: record.ReasonSurgeUnsupported, Release: rel.SHA}
	}
	switch step {
	case StepSurge:
		return withErr(record.Reason{Kind: record.ReasonSurgeFailed, Release: rel.SHA}, err)
	case StepDrain:
		return withErr(record.Reason{Kind: record.ReasonDrainFailed, Instance: id}, err)
	case StepInstall:
		return withErr(record.Reason{Kind: record.ReasonInstallFailed, Instance: id, Release: rel.SHA}, err)
	case StepAdmit:
		return withErr(record.Reason{Kind: record.ReasonAdmitFailed, Instance: id, Release: rel.SHA}, err)
	default: // a wait that ended early
		return withErr(record.Reason{Kind: record.ReasonStepStopped, Step: step, Release: rel.SHA}, err)
	}
}

// stepErr is step failing with err on instance id of batch b.
func (r *run) stepErr(b Batch, step, id string, rel Release, err error) *stepError {
	return &stepError{batch: b.Index, instance: id, step: step, err: err, reason: r.stepReason(step, id, rel, err)}
}

// withErr is why carrying err: a driver's error as the driver said it, or,
// for a panic the engine caught, the reason that says so.
func withErr(why record.Reason, err error) record.Reason {
	if p, ok := err.(*panicError); ok {
		why.Cause = &record.Reason{Kind: record.ReasonDriverPanicked, Instance: p.instance, Text: fmt.Sprint(p.value)}
		return why
	}
	why.Err = err.Error()
	return why
}
