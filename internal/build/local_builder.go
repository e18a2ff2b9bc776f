package build

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/artifact"
	"github.com/herokunix/herokunix/internal/heroku"
	"github.com/herokunix/herokunix/internal/image"
	"github.com/herokunix/herokunix/internal/nixbuild"
)

// LocalBuilder runs builds in the controller's own process, with the Nix
// installed where it runs (--builder=local). It runs the same build and
// push code as a build Job.
type LocalBuilder struct {
	Nix          nixbuild.Nix
	RegistryHost string
	// InsecureRegistry talks plain HTTP to the registry (local default).
	InsecureRegistry bool
	// WorkDir holds one workspace per build; removed when the build ends.
	WorkDir string
	// Parallel bounds concurrent builds (default 1: Nix builds are heavy).
	Parallel int
	// Events is told when a build finishes, so its resource is reconciled.
	Events chan<- event.TypedGenericEvent[*herokunixv1.HerokuNixApp]

	mu     sync.Mutex
	builds map[string]*localBuild
	slots  chan struct{}
}

type localBuild struct {
	owner  client.ObjectKey
	cancel context.CancelFunc
	state  State
}

var _ Builder = (*LocalBuilder)(nil)

// PollInterval is long: a finished build sends an event.
func (l *LocalBuilder) PollInterval() time.Duration { return time.Minute }

// Ensure starts the build in the background if it is new.
func (l *LocalBuilder) Ensure(_ context.Context, app *herokunixv1.HerokuNixApp, b Desired, apiKey string) (State, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.builds == nil {
		l.builds = map[string]*localBuild{}
		l.slots = make(chan struct{}, max(1, l.Parallel))
	}
	key := app.Namespace + "/" + b.Name
	if lb, ok := l.builds[key]; ok {
		return lb.state, nil
	}
	// The build outlives this reconcile; it ends with its timeout or a cancel.
	ctx, cancel := context.WithTimeout(context.Background(), b.Timeout)
	lb := &localBuild{owner: client.ObjectKeyFromObject(app), cancel: cancel, state: State{Phase: Running}}
	l.builds[key] = lb
	go l.run(ctx, key, lb, app.DeepCopy(), b, apiKey)
	return State{Phase: Running, Started: true}, nil
}

func (l *LocalBuilder) run(ctx context.Context, key string, lb *localBuild, app *herokunixv1.HerokuNixApp, b Desired, apiKey string) {
	defer lb.cancel()
	state := l.build(ctx, app, b, apiKey)
	l.mu.Lock()
	lb.state = state
	l.mu.Unlock()
	if l.Events != nil {
		l.Events <- event.TypedGenericEvent[*herokunixv1.HerokuNixApp]{Object: app}
	}
}

func (l *LocalBuilder) build(ctx context.Context, app *herokunixv1.HerokuNixApp, b Desired, apiKey string) State {
	select {
	case l.slots <- struct{}{}:
		defer func() { <-l.slots }()
	case <-ctx.Done():
		return State{Phase: Failed, Message: "build did not start: " + ctx.Err().Error(), Transient: TransientDeadline}
	}
	workspace, err := os.MkdirTemp(l.WorkDir, b.Name+"-")
	if err != nil {
		return State{Phase: Failed, Message: fmt.Sprintf("making workspace: %v", err)}
	}
	defer func() { _ = nixbuild.RemoveAllWritable(workspace) }()

	if _, err := nixbuild.Run(ctx, l.Nix, b.Request, workspace); err != nil {
		return failedLocally(ctx, err)
	}
	res, err := image.PushWorkspace(ctx, workspace, l.RegistryHost, app.Spec.AppName, image.PushOptions{
		Options:   image.Options{TempDir: workspace, MaxLayers: int(ptr.Deref(app.Spec.Build.MaxLayers, 0))},
		Remote:    []remote.Option{remote.WithAuth(heroku.RegistryAuth(apiKey)), remote.WithContext(ctx)},
		Insecure:  l.InsecureRegistry,
		Processes: slices.Collect(maps.Keys(b.Request.Processes)),
		ReuseFrom: b.ReuseFrom,
	})
	if err != nil {
		if image.IsUnauthorized(err) {
			return State{Phase: Failed, Message: err.Error(), Failure: artifact.FailureUnauthorized}
		}
		return failedLocally(ctx, err)
	}
	return State{Phase: Succeeded, Result: res}
}

// failedLocally is a failed local build, and whether it may pass: it ran
// past its timeout, or the network failed.
func failedLocally(ctx context.Context, err error) State {
	state := State{Phase: Failed, Message: err.Error(), Transient: transientMessage(err.Error())}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		state.Transient = TransientDeadline
	}
	return state
}

// CancelOthers cancels the app's running builds other than keep, and
// forgets finished ones (their outcome is on the resource's status).
func (l *LocalBuilder) CancelOthers(_ context.Context, app *herokunixv1.HerokuNixApp, keep string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	owner := client.ObjectKeyFromObject(app)
	for key, lb := range l.builds {
		if lb.owner == owner && key != app.Namespace+"/"+keep {
			lb.cancel()
			delete(l.builds, key)
		}
	}
	return nil
}
