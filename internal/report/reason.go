package report

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/shipbot/shipbot/internal/store/record"
)

// Reason says r in words: why a deploy failed, waits or was refused, a
// decision of its plan, a line of its log. What followed (r.Then) comes
// after it, each after a semicolon. It is the one place the engine's
// reasons become sentences; the check run, the deployment status, the
// deploy page and the deploy log all say them through it.
func Reason(r record.Reason) string {
	s := phrase(r)
	for _, t := range r.Then {
		s += "; " + Reason(t)
	}
	return s
}

// PlanNotes are a plan's notes in words, in order.
func PlanNotes(notes []record.Reason) []string {
	if len(notes) == 0 {
		return nil
	}
	out := make([]string, len(notes))
	for i, n := range notes {
		out[i] = Reason(n)
	}
	return out
}

// DeployReason is why a recorded deploy is in its state: its reason said
// again when the record keeps it as data and every kind in it is known
// here, else the words the record was written with (an older record, a
// preview's reason, or a kind of a newer version).
func DeployReason(d record.Deploy) string {
	if d.Why != nil && known(*d.Why) {
		return Reason(*d.Why)
	}
	return d.Reason
}

// BatchFailure is why a recorded batch failed, as DeployReason; "" when it
// did not.
func BatchFailure(b record.BatchTiming) string {
	if b.Failure != nil && known(*b.Failure) {
		return Reason(*b.Failure)
	}
	return b.Err
}

func phrase(r record.Reason) string {
	if say, ok := phrasings[r.Kind]; ok {
		return say(r, causeOf(r))
	}
	// A kind this version does not know (a record written by a newer one):
	// its name is better than nothing.
	return strings.ReplaceAll(string(r.Kind), "_", " ")
}

// known reports whether every kind in r can be phrased.
func known(r record.Reason) bool {
	if _, ok := phrasings[r.Kind]; !ok {
		return false
	}
	if r.Cause != nil && !known(*r.Cause) {
		return false
	}
	for _, t := range r.Then {
		if !known(t) {
			return false
		}
	}
	return true
}

// phrasing says one kind of reason; cause is its Cause already said, or
// the error it carries (causeOf).
type phrasing func(r record.Reason, cause string) string

// phrasings has one entry per kind of record.Reason: how it is said. The
// fields each kind reads are listed with its constant.
var phrasings = map[record.ReasonKind]phrasing{
	// Why a plan cannot be made.
	record.ReasonNoInstances: func(record.Reason, string) string {
		return "no instances found: there is nothing to deploy to; check the environment's instances (local driver) or instance_tags (aws driver)"
	},
	record.ReasonNoRelease: func(record.Reason, string) string {
		return "no release given: a plan needs the SHA to deploy"
	},
	record.ReasonInstanceWithoutID: func(r record.Reason, _ string) string {
		return "an instance in zone " + strconv.Quote(r.Zone) + " has no id"
	},
	record.ReasonInstanceTwice: func(r record.Reason, _ string) string {
		return "instance " + r.Instance + " is listed twice"
	},
	record.ReasonCanaryInvalid: func(r record.Reason, _ string) string {
		return fmt.Sprintf("canary %d is not a number of instances: use 1 or more", r.Want)
	},
	record.ReasonCanaryOverMaxUnavailable: func(r record.Reason, _ string) string {
		return fmt.Sprintf("canary %d exceeds max_unavailable %d of %d instances: lower canary or raise max_unavailable", r.Want, r.Limit, r.Of)
	},
	record.ReasonNoneLeftServing: func(r record.Reason, _ string) string {
		n := r.Count
		fix := "add an instance"
		if n > 1 {
			fix = fmt.Sprintf("lower canary below %d or add an instance", n) // a canary of 1 leaves the others serving
		}
		return fmt.Sprintf("only %s in rotation; updating %s would leave none serving, and this driver cannot start an extra instance first: %s",
			plural(n, "healthy instance is", "healthy instances are"), word(n, "it", "them together"), fix)
	},

	// The decisions of a plan.
	record.ReasonNoteBatchesCapped: func(r record.Reason, _ string) string {
		return fmt.Sprintf("batches capped to max_unavailable: %s at a time, not %d (of %s)", instances(r.Limit), r.Want, instances(r.Of))
	},
	record.ReasonNoteAllCurrent: func(r record.Reason, _ string) string {
		return fmt.Sprintf("all %s already run %s, healthy and in rotation: nothing to do", instances(r.Of), Short(r.Release))
	},
	record.ReasonNoteNothingServing: func(record.Reason, string) string {
		return "no instance is healthy and in rotation, so nothing is serving to protect: batches go ahead without keeping one serving"
	},
	record.ReasonNoteBrokenFirst: func(r record.Reason, _ string) string {
		return plural(r.Count, "instance is", "instances are") + " unhealthy or out of rotation; each zone's are replaced first, which costs no capacity"
	},
	record.ReasonNoteZoneFirst: func(r record.Reason, _ string) string {
		return fmt.Sprintf("started with zone %s instead of %s, so the canary does not take out the last healthy instance in rotation", zoneLabel(r.Zone), zoneLabel(r.InsteadOf))
	},
	record.ReasonNoteCanaryCapped: func(r record.Reason, _ string) string {
		return fmt.Sprintf("canary capped to zone %s (%s), not %d: by_zone keeps every batch within one zone", zoneLabel(r.Zone), instances(r.Count), r.Want)
	},
	record.ReasonNoteSurge: func(r record.Reason, _ string) string {
		return fmt.Sprintf("%s starts 1 extra instance on %s and puts it in rotation before taking out %s, the last healthy %s in rotation",
			batchLabel(r), Short(r.Release), strings.Join(r.Instances, ", "), word(len(r.Instances), "instance", "instances"))
	},

	// Why a rollout ended before any batch.
	record.ReasonNoEnvironment: func(record.Reason, string) string {
		return "no environment configuration given: the rollout needs the environment's rollout and health settings"
	},
	record.ReasonNoDriver: func(r record.Reason, _ string) string {
		return "no driver for " + r.Env + ": the rollout needs one to reach the instances"
	},
	record.ReasonSettingEmpty: func(r record.Reason, _ string) string {
		return unfollowable(r, r.Setting+" is empty")
	},
	record.ReasonSettingNotPositive: func(r record.Reason, _ string) string {
		return unfollowable(r, fmt.Sprintf("%s %s is not positive", r.Setting, r.Duration))
	},
	record.ReasonSettingBelowOne: func(r record.Reason, _ string) string {
		return unfollowable(r, fmt.Sprintf("%s %d is below 1", r.Setting, r.Count))
	},
	record.ReasonSettingNegative: func(r record.Reason, _ string) string {
		return unfollowable(r, fmt.Sprintf("%s %s is negative", r.Setting, r.Duration))
	},
	record.ReasonCancelledBeforeStart: func(record.Reason, string) string {
		return "cancelled before the rollout began; nothing was touched"
	},
	record.ReasonListFailed: func(r record.Reason, _ string) string {
		return "could not list the instances of " + r.Env + ": " + r.Err + "; nothing was touched"
	},
	record.ReasonBuildCancelled: func(r record.Reason, _ string) string {
		return "cancelled while building " + Short(r.Release) + "; nothing was touched"
	},
	record.ReasonBuildFailed: func(r record.Reason, _ string) string {
		return "build of " + Short(r.Release) + " failed: " + r.Err + "; nothing was touched"
	},
	record.ReasonSecretMissing: func(r record.Reason, _ string) string {
		// Short enough that the command fits a deployment status (140).
		return "missing secret " + r.Text + ": run `" + SecretsSetLine(r.Repo, r.Env, r.Text) + "`"
	},
	record.ReasonSecretUnreadable: func(r record.Reason, _ string) string {
		return "secret " + r.Text + " of " + r.Env + " cannot be read: " + r.Err + "; nothing was touched"
	},
	record.ReasonReleasePhaseFailed: func(r record.Reason, _ string) string {
		return "release phase failed: " + r.Setting + " for " + Short(r.Release) + ": " + r.Err + "; no instance was touched"
	},

	// How a rollout ended.
	record.ReasonAlreadyCurrent: func(r record.Reason, _ string) string {
		return fmt.Sprintf("nothing to do: all %s of %s already run %s, healthy and in rotation", instances(r.Of), r.Env, Short(r.Release))
	},
	record.ReasonDeployed: func(r record.Reason, _ string) string {
		s := fmt.Sprintf("%s is on all %s of %s", Short(r.Release), instances(r.Of), r.Env)
		if r.Of == 1 {
			s = fmt.Sprintf("%s is on the only instance of %s", Short(r.Release), r.Env)
		}
		if n := r.Count; n > 0 {
			s += fmt.Sprintf(" (%d already %s)", n, word(n, "was", "were"))
		}
		return s
	},
	record.ReasonBatchFailed: func(r record.Reason, cause string) string {
		return batchLabel(r) + ": " + cause
	},
	record.ReasonCancelledDuring: func(r record.Reason, _ string) string {
		return fmt.Sprintf("cancelled during %s (%s) of %s; nothing was rolled back: a resumed job re-plans and carries on from here", batchLabel(r), r.Step, Short(r.Release))
	},

	// A step of a batch that failed.
	record.ReasonHealthTimeout: func(r record.Reason, cause string) string {
		s := fmt.Sprintf("instance %s did not pass %s %s within %s on %s", r.Instance, r.Path, plural(r.Want, "time", "times"), r.Duration, Short(r.Release))
		if last := cause; last != "" {
			return s + " (last check: " + last + ")"
		}
		return s + fmt.Sprintf(" (only %d in a row)", r.Count)
	},
	record.ReasonConfirmFailed: func(r record.Reason, cause string) string {
		return fmt.Sprintf("instance %s failed %s right after going back into rotation on %s: %s", r.Instance, r.Path, Short(r.Release), cause)
	},
	record.ReasonBakeFailed: func(r record.Reason, cause string) string {
		return fmt.Sprintf("instance %s failed %s %s into the %s bake of %s: %s", r.Instance, r.Path, r.Elapsed, r.Duration, Short(r.Release), cause)
	},
	record.ReasonSurgeFailed: func(r record.Reason, cause string) string {
		return "could not start an extra instance on " + Short(r.Release) + ": " + cause
	},
	record.ReasonSurgeUnsupported: func(r record.Reason, _ string) string {
		return "could not start an extra instance on " + Short(r.Release) + ": the plan asks for an extra instance and this driver cannot start one"
	},
	record.ReasonDrainFailed: func(r record.Reason, cause string) string {
		return "could not take instance " + r.Instance + " out of rotation: " + cause
	},
	record.ReasonInstallFailed: func(r record.Reason, cause string) string {
		return fmt.Sprintf("install of %s on instance %s failed: %s", Short(r.Release), r.Instance, cause)
	},
	record.ReasonAdmitFailed: func(r record.Reason, cause string) string {
		return fmt.Sprintf("could not put instance %s back into rotation on %s: %s", r.Instance, Short(r.Release), cause)
	},
	record.ReasonStepStopped: func(r record.Reason, cause string) string {
		return fmt.Sprintf("%s of %s stopped: %s", r.Step, Short(r.Release), cause)
	},
	record.ReasonStepCancelled: func(r record.Reason, _ string) string {
		return "cancelled during " + r.Step
	},
	record.ReasonDriverPanicked: func(r record.Reason, _ string) string {
		return "driver panicked on " + r.Instance + ": " + r.Text
	},
	record.ReasonErrorRateHigh:    errorRateHigh,
	record.ReasonLatencyHigh:      latencyHigh,
	record.ReasonCheckBroken:      checkBroken,
	record.ReasonAlarmFiring:      alarmFiring,
	record.ReasonSourceUnreadable: sourceUnreadable,

	// What a failure did next.
	record.ReasonNothingChanged: func(record.Reason, string) string {
		return "nothing had been changed, so there is nothing to roll back"
	},
	record.ReasonNoEarlierRelease: func(r record.Reason, _ string) string {
		s := "this was the first deploy here, so there is no earlier release to roll back to"
		if r.Instance != "" {
			s += " (and " + r.Instance + " could not be taken out of rotation: " + r.Err + ")"
		}
		return s + ": " + describe(r.Left, r.Path)
	},
	record.ReasonRolledBack: func(r record.Reason, _ string) string {
		return "rolled back " + joinAnd(r.Instances) + " to " + Short(r.Previous)
	},
	record.ReasonRollbackCancelled: func(r record.Reason, _ string) string {
		return "cancelled while rolling back to " + Short(r.Previous) + ": " + describe(r.Left, r.Path)
	},
	record.ReasonRollbackBuildFailed: func(r record.Reason, _ string) string {
		return "rolling back failed too: build of " + Short(r.Previous) + " failed: " + r.Err + "; so " + describe(r.Left, r.Path)
	},
	record.ReasonRollbackFailed: func(r record.Reason, cause string) string {
		return fmt.Sprintf("rolling back to %s failed too, in %s: %s; so %s", Short(r.Previous), batchLabel(r), cause, describe(r.Left, r.Path))
	},
	record.ReasonSurgeLeft: func(r record.Reason, _ string) string {
		n := len(r.Instances)
		return fmt.Sprintf("the extra %s %s started for %s %s serving %s",
			word(n, "instance", "instances"), joinAnd(r.Instances), batchLabel(r), word(n, "keeps", "keep"), Short(r.Release))
	},
	record.ReasonRetireFailed: func(r record.Reason, cause string) string {
		return "the extra instance " + r.Instance + " could not be stopped: " + cause
	},

	// The engine's lines in the deploy log.
	record.ReasonBuilding: func(r record.Reason, _ string) string {
		return "building " + Short(r.Release)
	},
	record.ReasonReleasePhase: func(r record.Reason, _ string) string {
		return "release phase for " + Short(r.Release) + ": " + r.Setting + " " + r.Text
	},
	record.ReasonBatchStarting: func(r record.Reason, _ string) string {
		return batchLabel(r) + ": " + strings.Join(r.Instances, ", ") + " to " + Short(r.Release)
	},
	record.ReasonSurged: func(r record.Reason, _ string) string {
		return batchLabel(r) + ": started extra instance " + r.Instance + " on " + Short(r.Release)
	},
	record.ReasonRollingBack: func(r record.Reason, _ string) string {
		return "rolling back " + strings.Join(r.Instances, ", ") + " to " + Short(r.Previous)
	},
	record.ReasonNotJudged: notJudged,
	record.ReasonJudged:    judgedLine,

	// Drift repair.
	record.ReasonDriftFound: func(r record.Reason, _ string) string {
		return fmt.Sprintf("found %s of %s on another release than %s, its current one: %s; bringing %s to %s",
			instances(len(r.Found)), r.Env, Short(r.Release), drifted(r.Found), word(len(r.Found), "it", "them"), Short(r.Release))
	},
	record.ReasonRepaired: func(r record.Reason, _ string) string {
		return fmt.Sprintf("repaired %s to %s, %s's current release", drifted(r.Found), Short(r.Release), r.Env)
	},
	record.ReasonRepairFailed: func(r record.Reason, cause string) string {
		return fmt.Sprintf("the repair of %s to %s, %s's current release, failed: %s", drifted(r.Found), Short(r.Release), r.Env, cause)
	},
	record.ReasonRepairLeftOut: func(r record.Reason, _ string) string {
		s := "a repair rolls nothing back"
		if r.Instance != "" {
			s += " (and " + r.Instance + " could not be taken out of rotation: " + r.Err + ")"
		}
		return s + ": " + describe(r.Left, r.Path) + "; the next repair tries again in " + FormatDuration(r.Duration) + ", or the next deploy does"
	},

	// Why a deploy waits or did not run.
	record.ReasonWaitingForChecks: func(r record.Reason, _ string) string {
		return "waiting for required checks: " + strings.Join(r.Checks, ", ")
	},
	record.ReasonLocked: func(r record.Reason, _ string) string {
		s := "waiting for /unlock: locked by " + r.By
		if r.Text != "" {
			s += " (" + r.Text + ")"
		}
		return s
	},
	record.ReasonSuperseded: func(r record.Reason, _ string) string {
		return "superseded by " + r.Release
	},
	record.ReasonFrozen: func(r record.Reason, _ string) string {
		return frozenReason(r)
	},
	record.ReasonText: func(r record.Reason, _ string) string {
		return r.Text
	},
}

// causeOf is what a reason is about, in words: its Cause (the step that
// failed; an error the engine describes), else the error it carries.
func causeOf(r record.Reason) string {
	if r.Cause != nil {
		return Reason(*r.Cause)
	}
	return r.Err
}

func unfollowable(r record.Reason, rule string) string {
	return "the settings of " + r.Env + " cannot be followed: " + rule + "; nothing was touched"
}

// describe says where a stopped rollout left its instances: what each
// runs and whether it is in rotation, instances in the same state together.
func describe(left []record.Placement, path string) string {
	var order []string
	groups := map[string][]string{}
	for _, p := range left {
		var d string
		switch {
		case p.Lost && p.Out:
			d = "out of rotation after a failed install"
		case p.Lost:
			d = "in rotation after a failed install"
		case p.Out:
			d = "out of rotation on " + releaseName(p.Release)
		case p.Failing:
			d = "in rotation on " + releaseName(p.Release) + " but failing " + path
		default:
			d = "in rotation on " + releaseName(p.Release)
		}
		if _, seen := groups[d]; !seen {
			order = append(order, d)
		}
		groups[d] = append(groups[d], p.Instance)
	}
	parts := make([]string, 0, len(order))
	for _, d := range order {
		g := groups[d]
		parts = append(parts, joinAnd(g)+" "+word(len(g), "is", "are")+" "+d)
	}
	return strings.Join(parts, "; ")
}

// batchLabel names r's batch: "batch 2", "batch 1 (the canary)".
func batchLabel(r record.Reason) string {
	if r.Canary {
		return fmt.Sprintf("batch %d (the canary)", r.Batch+1)
	}
	return fmt.Sprintf("batch %d", r.Batch+1)
}

// zoneLabel is a zone's name, saying so when it is the empty one.
func zoneLabel(zone string) string {
	if zone == "" {
		return `"" (no zone)`
	}
	return zone
}

func releaseName(sha string) string {
	if sha == "" {
		return "no release"
	}
	return Short(sha)
}

// drifted is each instance a repair found with the release it ran:
// "i-0abc (from no release) and i-0def (from 9f8e7d6)".
func drifted(found []record.Placement) string {
	parts := make([]string, len(found))
	for i, p := range found {
		parts[i] = p.Instance + " (from " + releaseName(p.Release) + ")"
	}
	return joinAnd(parts)
}

func instances(n int) string { return plural(n, "instance", "instances") }

// word is one or many by n; plural prefixes n.
func word(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// joinAnd is "a", "a and b", "a, b and c".
func joinAnd(list []string) string {
	switch len(list) {
	case 0:
		return ""
	case 1:
		return list[0]
	}
	return strings.Join(list[:len(list)-1], ", ") + " and " + list[len(list)-1]
}

// SecretsSetLine is the command that sets a secret on the bot.
func SecretsSetLine(repo, env, name string) string {
	return "bot secrets set " + repo + " " + env + " " + name
}
