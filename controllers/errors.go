package controllers

import (
	"errors"
	"fmt"
	"time"

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
}

func (e *stepError) Error() string { return e.Err.Error() }
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

// herokuError classifies a Heroku failure into a step error. What only a
// person can fix (a missing app, a wrong stack, a bad key) stalls; rate
// limits and outages are retried when Heroku says.
func herokuError(op string, err error) *stepError {
	wrapped := fmt.Errorf("%s: %w", op, err)
	var stack *heroku.StackError
	switch {
	case errors.As(err, &stack):
		return &stepError{Reason: herokunixv1.ReasonStackNotContainer, Err: wrapped, Stalling: true}
	case errors.Is(err, heroku.ErrNotFound):
		return &stepError{Reason: herokunixv1.ReasonAppNotFound, Err: wrapped, Stalling: true}
	case errors.Is(err, heroku.ErrUnauthorized), errors.Is(err, heroku.ErrForbidden):
		return &stepError{Reason: herokunixv1.ReasonUnauthorized, Err: wrapped, Stalling: true}
	case errors.Is(err, heroku.ErrRateLimited):
		after, _ := heroku.RetryAfter(err)
		return &stepError{Reason: herokunixv1.ReasonRateLimited, Err: wrapped, RetryAfter: after}
	case errors.Is(err, heroku.ErrInvalidParams):
		return &stepError{Reason: herokunixv1.ReasonReleaseFailed, Err: wrapped, Stalling: true}
	default:
		after, _ := heroku.RetryAfter(err)
		return &stepError{Reason: herokunixv1.ReasonHerokuUnavailable, Err: wrapped, RetryAfter: after}
	}
}
