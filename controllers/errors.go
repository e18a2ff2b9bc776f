package controllers

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/heroku"
)

// stepError ends a reconcile pass with a reason for the conditions.
//
// A stalling error means retrying cannot help until something changes (the
// spec, the Secret, the Heroku app): the pass sets Stalled and waits for a
// watch event. Any other error is retried, after RetryAfter when set, else
// with the controller's back-off.
type stepError struct {
	Reason     string
	Err        error
	Stalling   bool
	RetryAfter time.Duration
	// Summary, when set, is what the conditions say instead of Err: words
	// that stay the same while one failure is retried (no countdown, no
	// request id), so a retry that fails alike writes no status. Err is
	// still logged.
	Summary string
}

func (e *stepError) Error() string { return e.Err.Error() }

// conditionMessage is what the conditions say of the error.
func (e *stepError) conditionMessage() string {
	if e.Summary != "" {
		return e.Summary
	}
	return e.Error()
}
func (e *stepError) Unwrap() error { return e.Err }

// waiting ends a pass early without failing it: something is in progress
// (a build, a release phase). The pass sets Reconciling and looks again
// after After (zero: a watch event will come).
type waiting struct {
	Reason  string
	Message string
	After   time.Duration
}

func (w *waiting) Error() string { return w.Message }

func stalled(reason string, format string, args ...any) *stepError {
	return &stepError{Reason: reason, Err: fmt.Errorf(format, args...), Stalling: true}
}

// readForbidden is the stall for a Forbidden reading an object the spec
// names: only a person granting RBAC can fix it, and no watch event says
// when they have, so the resource looks again at its interval.
func readForbidden(err error, kind, namespace, name, what string) error {
	if !apierrors.IsForbidden(err) {
		return nil
	}
	return stalled(herokunixv1.ReasonReadForbidden,
		"the manager may not read %s %s/%s (%s): its ServiceAccount lacks get on %s in namespace %s; grant it (config/rbac) or name one it may read",
		kind, namespace, name, what, strings.ToLower(kind)+"s", namespace)
}

// herokuError classifies a Heroku failure into a step error. What only a
// person can fix (a missing app, a Fir app, a wrong stack, a bad key) stalls; rate
// limits and outages are retried when Heroku says.
func herokuError(op string, err error) *stepError {
	wrapped := fmt.Errorf("%s: %w", op, err)
	var stack *heroku.StackError
	switch {
	case errors.Is(err, heroku.ErrUnsupportedGeneration):
		// GenerationError's text says what to do: use a Cedar app on the
		// container stack (a stack change cannot help a Fir app).
		return &stepError{Reason: herokunixv1.ReasonUnsupportedGeneration, Err: wrapped, Stalling: true}
	case errors.As(err, &stack):
		return &stepError{Reason: herokunixv1.ReasonStackNotContainer, Err: wrapped, Stalling: true}
	case errors.Is(err, heroku.ErrNotFound):
		return &stepError{Reason: herokunixv1.ReasonAppNotFound, Err: wrapped, Stalling: true}
	case errors.Is(err, heroku.ErrUnauthorized), errors.Is(err, heroku.ErrForbidden):
		return &stepError{Reason: herokunixv1.ReasonUnauthorized, Err: wrapped, Stalling: true}
	case errors.Is(err, heroku.ErrRateLimited):
		after, _ := heroku.RetryAfter(err)
		return &stepError{Reason: herokunixv1.ReasonRateLimited, Err: wrapped, RetryAfter: after,
			Summary: op + ": rate limited (the Heroku account's budget, or herokunix's share of it, is spent)"}
	case errors.Is(err, heroku.ErrInvalidParams):
		return &stepError{Reason: herokunixv1.ReasonReleaseFailed, Err: wrapped, Stalling: true}
	default:
		after, _ := heroku.RetryAfter(err)
		return &stepError{Reason: herokunixv1.ReasonHerokuUnavailable, Err: wrapped, RetryAfter: after, Summary: unavailableSummary(op, err)}
	}
}

// unavailableSummary says Heroku did not serve op without what changes
// from one try to the next; "" (use the error) for an error not Heroku's.
func unavailableSummary(op string, err error) string {
	var e *heroku.Error
	if !errors.As(err, &e) {
		return ""
	}
	if e.StatusCode == 0 {
		return op + ": Heroku is unavailable (no answer)"
	}
	return fmt.Sprintf("%s: Heroku is unavailable (HTTP %d)", op, e.StatusCode)
}

// Retry back-off for a resource Heroku turns away (rate limited or
// unavailable): exponential from retryBase to retryCap, jittered, and never
// sooner than Heroku asked.
const (
	retryBase = 5 * time.Second
	retryCap  = 10 * time.Minute
)

// herokuRetries spaces the retries of each resource Heroku turns away, so
// a rate-limit storm over many resources thins out instead of retrying
// every second (the client's limiter hint) or every 15 s.
type herokuRetries struct {
	// base is the first back-off (zero: retryBase).
	base     time.Duration
	mu       sync.Mutex
	failures map[types.NamespacedName]int
}

// backOff sets when a pass that ended in err is retried: a rate-limited or
// unavailable Heroku backs off per resource; any other end forgets the
// resource's failures.
func (h *herokuRetries) backOff(key types.NamespacedName, err error) {
	var se *stepError
	turnedAway := errors.As(err, &se) && !se.Stalling &&
		(se.Reason == herokunixv1.ReasonRateLimited || se.Reason == herokunixv1.ReasonHerokuUnavailable)
	h.mu.Lock()
	defer h.mu.Unlock()
	if !turnedAway {
		delete(h.failures, key)
		return
	}
	if h.failures == nil {
		h.failures = map[types.NamespacedName]int{}
	}
	n := h.failures[key]
	h.failures[key] = n + 1
	base := h.base
	if base <= 0 {
		base = retryBase
	}
	d := min(retryCap, base<<min(n, 16))
	d = d/2 + time.Duration(rand.Int64N(int64(d/2)+1)) // [d/2, d]: resources spread out
	se.RetryAfter = max(se.RetryAfter, d)
}
