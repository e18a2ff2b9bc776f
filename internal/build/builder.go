package build

import (
	"context"
	"time"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/artifact"
)

// Phase is where a build is.
type Phase string

const (
	Running   Phase = "Running"
	Succeeded Phase = "Succeeded"
	Failed    Phase = "Failed"
)

// State is what a builder knows of one build.
type State struct {
	Phase Phase
	// Result is set when the build succeeded.
	Result *artifact.Result
	// Message is the end of the build's log when it failed.
	Message string
	// Failure, on a failed build, names a failure that is not the build's
	// fault: artifact.FailureUnauthorized when the registry refused the
	// Heroku key (a credentials problem). Empty for a failed build.
	Failure artifact.FailureKind
	// Transient, on a failed build, says why it may get through when run
	// again unchanged (one of the Transient* causes: an evicted pod, the
	// deadline, a network failure); empty for a failure of the build itself.
	Transient string
	// Started reports that this call started the build.
	Started bool
}

// Builder runs builds. Ensure never blocks on a build: it starts the build
// if none of that name exists and reports where it is.
type Builder interface {
	Ensure(ctx context.Context, app *herokunixv1.HerokuNixApp, b Desired, apiKey string) (State, error)
	// CancelOthers stops every build of app except the named one, and
	// forgets finished ones beyond a short history.
	CancelOthers(ctx context.Context, app *herokunixv1.HerokuNixApp, keep string) error
	// PollInterval is how soon to look at a running build again when no
	// event will say it finished.
	PollInterval() time.Duration
}
