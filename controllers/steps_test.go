package controllers

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/artifact"
	"github.com/herokunix/herokunix/internal/build"
	"github.com/herokunix/herokunix/internal/heroku"
)

// endsAs describes how a step ended: "" (the pass goes on), "Waiting
// Reason", "Stalled Reason", "Retried Reason after", or "Retried Reason".
func endsAs(err error) string {
	var w *waiting
	var se *stepError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &w):
		return "Waiting " + w.Reason
	case errors.As(err, &se) && se.Stalling:
		return "Stalled " + se.Reason
	case errors.As(err, &se) && se.RetryAfter > 0:
		return "Retried " + se.Reason + " after " + se.RetryAfter.String()
	case errors.As(err, &se):
		return "Retried " + se.Reason
	}
	return "Error " + err.Error()
}

// deployedOn makes the fake Heroku's latest release the deploy of app's
// images, recorded on app's status as the release it made.
func deployedOn(h *fakeHeroku, app *herokunixv1.HerokuNixApp) {
	rel := h.release(deployDescription(builtImageIDs(app)), heroku.ReleaseSucceeded)
	app.Status.Release = &herokunixv1.ReleaseStatus{ID: rel.ID, Version: rel.Version, Name: releaseName(rel.Version), Status: rel.Status, Images: builtImageIDs(app)}
}

func TestReconcileBuild(t *testing.T) {
	built := &artifact.Result{Revision: strings.Repeat("ab", 20), LockedFlake: "github:acme/shop/" + strings.Repeat("ab", 20),
		Images: map[string]artifact.Image{"web": {ImageID: "sha256:" + strings.Repeat("c", 64), Digest: "sha256:" + strings.Repeat("d", 64)}}}
	cases := []struct {
		name     string
		deployed bool
		refresh  bool
		state    build.State
		ends     string
		built    string
		events   []string
		asked    bool
	}{
		{name: "a first build starts and the pass waits for it",
			state: build.State{Phase: build.Running, Started: true},
			ends:  "Waiting " + herokunixv1.ReasonBuildRunning, built: "False " + herokunixv1.ReasonBuildRunning,
			asked: true}, // Ready's change to BuildRunning is its event
		{name: "a running first build is followed without a new event",
			state: build.State{Phase: build.Running},
			ends:  "Waiting " + herokunixv1.ReasonBuildRunning, built: "False " + herokunixv1.ReasonBuildRunning, asked: true},
		{name: "a failed first build stalls with its log",
			state: build.State{Phase: build.Failed, Message: "error: attribute 'web' missing"},
			ends:  "Stalled " + herokunixv1.ReasonBuildFailed, built: "False " + herokunixv1.ReasonBuildFailed, asked: true},
		{name: "a succeeded build records its images",
			state: build.State{Phase: build.Succeeded, Result: built},
			built: "True " + herokunixv1.ReasonBuildSucceeded, events: []string{"Normal " + herokunixv1.ReasonBuildSucceeded}, asked: true},
		{name: "a finished build of the deployed spec is not asked about again", deployed: true,
			built: "True " + herokunixv1.ReasonBuildSucceeded},
		{name: "a requested refresh runs in the background", deployed: true, refresh: true,
			state: build.State{Phase: build.Running, Started: true},
			built: "True " + herokunixv1.ReasonBuildSucceeded, events: []string{"Normal BuildStarted"}, asked: true},
		{name: "a failed refresh only marks Built, the release keeps serving", deployed: true, refresh: true,
			state: build.State{Phase: build.Failed, Message: "error: builder failed"},
			built: "False " + herokunixv1.ReasonBuildFailed, events: []string{"Warning " + herokunixv1.ReasonBuildFailed}, asked: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			app := summaryApp(tc.deployed)
			w := newFakeWorld(t)
			w.build.state = tc.state
			p := w.pass(t, app)
			p.forceRefresh = tc.refresh
			want := build.DesiredFor(app, testTime, tc.refresh)

			err := w.r.reconcileBuild(context.Background(), p)

			if got := endsAs(err); got != tc.ends {
				t.Errorf("ends as %q, want %q (%v)", got, tc.ends, err)
			}
			if got := condition(app, herokunixv1.ConditionBuilt); got != tc.built {
				t.Errorf("Built = %q, want %q", got, tc.built)
			}
			if got := w.events.reasons(); !slices.Equal(got, tc.events) {
				t.Errorf("events %v, want %v", got, tc.events)
			}
			if asked := len(w.build.ensured) > 0; asked != tc.asked || (asked && w.build.ensured[0] != want.Name) {
				t.Errorf("builder asked for %v, want %s: %v", w.build.ensured, want.Name, tc.asked)
			}
			if app.Status.Build == nil || app.Status.Build.Job != want.Name {
				t.Errorf("status.build %+v does not record %s", app.Status.Build, want.Name)
			}
			switch tc.state.Phase {
			case build.Failed:
				if app.Status.Build.Message != tc.state.Message || app.Status.Build.CompletionTime == nil {
					t.Errorf("status.build %+v does not record the failure", app.Status.Build)
				}
			case build.Succeeded:
				if app.Status.Revision != built.Revision || app.Status.Images["web"].ImageID != built.Images["web"].ImageID ||
					app.Status.Build.SucceededHash != want.SpecHash {
					t.Errorf("status %+v does not record the build", app.Status)
				}
			}
		})
	}
}

// TestABuildPodRefusedByPodSecurityStalls: a namespace whose Pod Security
// level refuses the build pod stalls the pass at once with
// BuildPodRefused, on Built too, saying what to do.
func TestABuildPodRefusedByPodSecurityStalls(t *testing.T) {
	app := summaryApp(false)
	w := newFakeWorld(t)
	w.build.err = &build.PodRefusedError{Namespace: "team-a", Level: "restricted"}
	p := w.pass(t, app)

	err := w.r.reconcileBuild(context.Background(), p)

	if got := endsAs(err); got != "Stalled "+herokunixv1.ReasonBuildPodRefused {
		t.Errorf("ends as %q (%v)", got, err)
	}
	built := findCondition(app, herokunixv1.ConditionBuilt)
	if built == nil || built.Reason != herokunixv1.ReasonBuildPodRefused || !strings.Contains(built.Message, "baseline") {
		t.Errorf("Built = %+v, want BuildPodRefused saying what to do", built)
	}
}

func TestReconcileRelease(t *testing.T) {
	rateLimited := &heroku.Error{Kind: heroku.KindRateLimited, ID: "rate_limit", RetryAfter: time.Minute}
	cases := []struct {
		name string
		// deployed: the resource released its images before this pass.
		deployed bool
		setup    func(h *fakeHeroku, app *herokunixv1.HerokuNixApp)
		ends     string
		released string
		// version is status.release's version afterwards (0: none).
		version int
		writes  []string
		events  []string
	}{
		{name: "a first release is made and recorded",
			released: "True " + herokunixv1.ReasonReleased, version: 1, writes: []string{"release"},
			events: []string{"Normal ReleaseCreated"}},
		{name: "a release phase is waited for",
			setup:    func(h *fakeHeroku, _ *herokunixv1.HerokuNixApp) { h.pendingReleases = true },
			ends:     "Waiting " + herokunixv1.ReasonReleasePending,
			released: "False " + herokunixv1.ReasonReleasePending, version: 1, writes: []string{"release"},
			events: []string{"Normal ReleaseCreated"}},
		{name: "a finished release phase is adopted", deployed: true,
			setup: func(_ *fakeHeroku, app *herokunixv1.HerokuNixApp) { app.Status.Release.Status = heroku.ReleasePending },
			// deployedOn made it succeed on Heroku.
			released: "True " + herokunixv1.ReasonReleased, version: 1},
		{name: "a failed release phase stalls and keeps the previous release", deployed: true,
			setup: func(h *fakeHeroku, app *herokunixv1.HerokuNixApp) {
				app.Status.Release.Status = heroku.ReleasePending
				h.releases[0].Status = heroku.ReleaseFailed
			},
			ends:     "Stalled " + herokunixv1.ReasonReleasePhaseFailed,
			released: "False " + herokunixv1.ReasonReleasePhaseFailed, version: 1},
		{name: "an app not on the container stack stalls",
			setup:    func(h *fakeHeroku, _ *herokunixv1.HerokuNixApp) { h.stack = "heroku-24" },
			ends:     "Stalled " + herokunixv1.ReasonStackNotContainer,
			released: "False " + herokunixv1.ReasonStackNotContainer},
		{name: "a missing app stalls",
			setup: func(h *fakeHeroku, _ *herokunixv1.HerokuNixApp) {
				h.err["App"] = &heroku.Error{Kind: heroku.KindNotFound, ID: "not_found"}
			},
			ends: "Stalled " + herokunixv1.ReasonAppNotFound, released: "False " + herokunixv1.ReasonAppNotFound},
		{name: "a rate limit is retried when Heroku says",
			setup:    func(h *fakeHeroku, _ *herokunixv1.HerokuNixApp) { h.err["SendImages"] = rateLimited },
			ends:     "Retried " + herokunixv1.ReasonRateLimited + " after 1m0s",
			released: "False " + herokunixv1.ReasonRateLimited},
		{name: "a release someone else made that runs the images is adopted",
			// The images are sent (no description is trusted); Heroku
			// ignores every type, and its current release is adopted.
			setup: func(h *fakeHeroku, app *herokunixv1.HerokuNixApp) {
				h.release(deployDescription(builtImageIDs(app)), heroku.ReleaseSucceeded)
			},
			released: "True " + herokunixv1.ReasonReleased, version: 1, writes: []string{"release"}},
		{name: "a resync with no newer release writes nothing", deployed: true,
			released: "True " + herokunixv1.ReasonReleased, version: 1},
		{name: "a config var release is adopted, not drift", deployed: true,
			setup: func(h *fakeHeroku, app *herokunixv1.HerokuNixApp) {
				app.Spec.DriftPolicy = herokunixv1.DriftPolicyObserve
				h.release("Set FOO config vars", heroku.ReleaseSucceeded)
			},
			released: "True " + herokunixv1.ReasonReleased, version: 2},
		{name: "drift is corrected by releasing the built images again", deployed: true,
			setup: func(h *fakeHeroku, _ *herokunixv1.HerokuNixApp) {
				h.release("Deployed web (0123456789ab)", heroku.ReleaseSucceeded)
			},
			released: "True " + herokunixv1.ReasonReleased, version: 3, writes: []string{"release"},
			events: []string{"Normal ReleaseCreated", "Warning " + herokunixv1.ReasonDriftDetected}},
		{name: "a correcting release in its release phase still reports the drift", deployed: true,
			setup: func(h *fakeHeroku, _ *herokunixv1.HerokuNixApp) {
				h.release("Deployed web (0123456789ab)", heroku.ReleaseSucceeded)
				h.pendingReleases = true
			},
			ends:     "Waiting " + herokunixv1.ReasonReleasePending,
			released: "False " + herokunixv1.ReasonReleasePending, version: 3, writes: []string{"release"},
			events: []string{"Normal ReleaseCreated", "Warning " + herokunixv1.ReasonDriftDetected}},
		{name: "drift is only reported with driftPolicy Observe", deployed: true,
			setup: func(h *fakeHeroku, app *herokunixv1.HerokuNixApp) {
				app.Spec.DriftPolicy = herokunixv1.DriftPolicyObserve
				h.release("Deployed web (0123456789ab)", heroku.ReleaseSucceeded)
				h.release("Set FOO config vars", heroku.ReleaseSucceeded)
			},
			ends: "Stalled " + herokunixv1.ReasonDriftDetected, released: "True " + herokunixv1.ReasonReleased, version: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			app := summaryApp(true)
			app.Status.Release = nil
			meta := app.Status.Conditions[:0]
			for _, c := range app.Status.Conditions {
				if c.Type == herokunixv1.ConditionBuilt {
					meta = append(meta, c)
				}
			}
			app.Status.Conditions = meta
			w := newFakeWorld(t, app)
			if tc.deployed {
				deployedOn(w.heroku, app)
				setCondition(app, herokunixv1.ConditionReleased, metav1.ConditionTrue, herokunixv1.ReasonReleased, "release v1 of acme-shop succeeded")
			}
			if tc.setup != nil {
				tc.setup(w.heroku, app)
			}
			p := w.pass(t, app)

			err := w.r.reconcileRelease(context.Background(), p)

			if got := endsAs(err); got != tc.ends {
				t.Errorf("ends as %q, want %q (%v)", got, tc.ends, err)
			}
			if got := condition(app, herokunixv1.ConditionReleased); got != tc.released {
				t.Errorf("Released = %q, want %q", got, tc.released)
			}
			version := 0
			if app.Status.Release != nil {
				version = app.Status.Release.Version
			}
			if version != tc.version {
				t.Errorf("status.release %+v, want version %d", app.Status.Release, tc.version)
			}
			if !slices.Equal(w.heroku.writes, tc.writes) {
				t.Errorf("Heroku writes %v, want %v", w.heroku.writes, tc.writes)
			}
			if got := w.events.reasons(); !slices.Equal(got, tc.events) {
				t.Errorf("events %v, want %v", got, tc.events)
			}
		})
	}
}

func TestReconcileFormation(t *testing.T) {
	unavailable := &heroku.Error{Kind: heroku.KindUnavailable, ID: "unavailable"}
	cases := []struct {
		name      string
		processes map[string]herokunixv1.Process
		scaleErr  error
		ends      string
		formation []heroku.Formation
		events    []string
	}{
		{name: "quantities and sizes are applied",
			processes: map[string]herokunixv1.Process{
				"web":     {Attribute: "a", Quantity: ptr.To[int32](2), Size: "standard-1X"},
				"worker":  {Attribute: "b", Quantity: ptr.To[int32](0)},
				"release": {Attribute: "c", Quantity: ptr.To[int32](1)},
			},
			formation: []heroku.Formation{{Type: "web", Quantity: 2, Size: "standard-1X"}, {Type: "worker", Quantity: 0}},
			events:    []string{"Normal Scaled"}},
		{name: "a spec without quantities scales nothing",
			processes: map[string]herokunixv1.Process{"web": {Attribute: "a"}}},
		{name: "a failed scale is retried and not recorded as applied",
			processes: map[string]herokunixv1.Process{"web": {Attribute: "a", Quantity: ptr.To[int32](2)}},
			scaleErr:  unavailable, ends: "Retried " + herokunixv1.ReasonHerokuUnavailable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			app := summaryApp(true)
			app.Spec.Processes = tc.processes
			w := newFakeWorld(t)
			w.heroku.err["ScaleFormation"] = tc.scaleErr
			p := w.pass(t, app)

			err := w.r.reconcileFormation(context.Background(), p)

			if got := endsAs(err); got != tc.ends {
				t.Errorf("ends as %q, want %q (%v)", got, tc.ends, err)
			}
			if !slices.Equal(w.heroku.formation, tc.formation) {
				t.Errorf("formation %+v, want %+v", w.heroku.formation, tc.formation)
			}
			if got := w.events.reasons(); !slices.Equal(got, tc.events) {
				t.Errorf("events %v, want %v", got, tc.events)
			}
			if applied := app.Status.AppliedFormation == build.Fingerprint(desiredFormation(app)); applied != (err == nil) {
				t.Errorf("appliedFormation %q recorded: %v, want %v", app.Status.AppliedFormation, applied, err == nil)
			}
			// The next pass finds it applied and writes nothing.
			writes := len(w.heroku.writes)
			if err == nil {
				if err := w.r.reconcileFormation(context.Background(), p); err != nil || len(w.heroku.writes) != writes {
					t.Errorf("a second pass wrote %v (%v)", w.heroku.writes[writes:], err)
				}
			}
		})
	}
}

func TestReconcileDeletion(t *testing.T) {
	unavailable := &heroku.Error{Kind: heroku.KindUnavailable, ID: "unavailable"}
	cases := []struct {
		name string
		// mutate changes the resource being deleted (deployed, ScaleToZero,
		// deleted at testTime).
		mutate func(app *herokunixv1.HerokuNixApp)
		others []client.Object
		setup  func(h *fakeHeroku)
		ends   string
		// kept: the finalizer stays.
		kept      bool
		formation []heroku.Formation
		events    []string
	}{
		{name: "ScaleToZero scales every process type to zero, then lets go",
			formation: []heroku.Formation{{Type: "web", Quantity: 0}, {Type: "worker", Quantity: 0}},
			events:    []string{"Normal " + herokunixv1.ReasonDeleting}},
		{name: "Retain leaves the dynos running",
			mutate:    func(app *herokunixv1.HerokuNixApp) { app.Spec.DeletionPolicy = herokunixv1.DeletionPolicyRetain },
			formation: []heroku.Formation{{Type: "web", Quantity: 2}, {Type: "worker", Quantity: 1}}},
		{name: "a suspended resource leaves the dynos running",
			mutate:    func(app *herokunixv1.HerokuNixApp) { app.Spec.Suspend = true },
			formation: []heroku.Formation{{Type: "web", Quantity: 2}, {Type: "worker", Quantity: 1}}},
		{name: "one that never released leaves the dynos running",
			mutate:    func(app *herokunixv1.HerokuNixApp) { app.Status.Release = nil },
			formation: []heroku.Formation{{Type: "web", Quantity: 2}, {Type: "worker", Quantity: 1}}},
		{name: "the younger of two leaves the older one's dynos running",
			others: []client.Object{func() client.Object {
				older := summaryApp(true)
				older.Name, older.Namespace, older.UID = "shop", "team-b", "uid-older"
				older.CreationTimestamp = metav1.Time{Time: testTime.Add(-time.Hour)}
				return older
			}()},
			mutate:    func(app *herokunixv1.HerokuNixApp) { app.CreationTimestamp = metav1.Time{Time: testTime} },
			formation: []heroku.Formation{{Type: "web", Quantity: 2}, {Type: "worker", Quantity: 1}}},
		{name: "an app gone from Heroku has nothing to scale",
			setup:     func(h *fakeHeroku) { h.err["Formation"] = &heroku.Error{Kind: heroku.KindNotFound, ID: "not_found"} },
			formation: []heroku.Formation{{Type: "web", Quantity: 2}, {Type: "worker", Quantity: 1}},
			events:    []string{"Normal " + herokunixv1.ReasonDeleting}},
		{name: "a Heroku outage is retried within the grace period",
			setup: func(h *fakeHeroku) { h.err["ScaleFormation"] = unavailable },
			ends:  "Retried " + herokunixv1.ReasonDeleting + " after 30s", kept: true,
			formation: []heroku.Formation{{Type: "web", Quantity: 2}, {Type: "worker", Quantity: 1}}},
		{name: "missing credentials are retried until the grace period ends",
			mutate: func(app *herokunixv1.HerokuNixApp) {
				app.Spec.CredentialsSecretRef.Name = "gone"
				app.DeletionTimestamp = &metav1.Time{Time: testTime.Add(-9*time.Minute - 50*time.Second)}
			},
			ends: "Retried " + herokunixv1.ReasonDeleting + " after 10s", kept: true,
			formation: []heroku.Formation{{Type: "web", Quantity: 2}, {Type: "worker", Quantity: 1}}},
		{name: "after the grace period it lets go with a warning",
			mutate: func(app *herokunixv1.HerokuNixApp) {
				app.Spec.CredentialsSecretRef.Name = "gone"
				app.DeletionTimestamp = &metav1.Time{Time: testTime.Add(-defaultDeletionGrace)}
			},
			formation: []heroku.Formation{{Type: "web", Quantity: 2}, {Type: "worker", Quantity: 1}},
			events:    []string{"Warning " + herokunixv1.ReasonDeleting}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			app := summaryApp(true)
			app.Spec.DeletionPolicy = herokunixv1.DeletionPolicyScaleToZero
			app.DeletionTimestamp = &metav1.Time{Time: testTime}
			app.Finalizers = []string{herokunixv1.Finalizer}
			app.UID = "uid-deleted"
			if tc.mutate != nil {
				tc.mutate(app)
			}
			w := newFakeWorld(t, append(tc.others, app)...)
			w.heroku.formation = []heroku.Formation{{Type: "web", Quantity: 2}, {Type: "worker", Quantity: 1}}
			if tc.setup != nil {
				tc.setup(w.heroku)
			}
			var cur herokunixv1.HerokuNixApp
			if err := w.c.Get(context.Background(), client.ObjectKeyFromObject(app), &cur); err != nil {
				t.Fatal(err)
			}

			err := w.r.reconcileDeletion(context.Background(), &pass{app: &cur, now: testTime})

			if got := endsAs(err); got != tc.ends {
				t.Errorf("ends as %q, want %q (%v)", got, tc.ends, err)
			}
			gerr := w.c.Get(context.Background(), client.ObjectKeyFromObject(app), &cur)
			if kept := gerr == nil; kept != tc.kept || (!kept && !apierrors.IsNotFound(gerr)) {
				t.Errorf("resource kept: %v (%v), want %v", kept, gerr, tc.kept)
			}
			if !slices.Equal(w.heroku.formation, tc.formation) {
				t.Errorf("formation %+v, want %+v", w.heroku.formation, tc.formation)
			}
			if got := w.events.reasons(); !slices.Equal(got, tc.events) {
				t.Errorf("events %v, want %v", got, tc.events)
			}
		})
	}
}
