package controllers

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/build"
	"github.com/herokunix/herokunix/internal/heroku"
)

var update = flag.Bool("update", false, "rewrite "+statusesFile+" from conclude")

// statusesFile holds the statuses conclude writes, one per row of
// summaryRows; config/argocd checks how Argo CD and kstatus read each.
const statusesFile = "testdata/statuses.yaml"

// requeue is what a row expects of the pass's result.
type requeue int

const (
	requeueNever    requeue = iota // a watch event will come
	requeueInterval                // a jittered spec.interval
	requeueAfter                   // exactly the row's after
	requeueBackoff                 // an error: the controller's back-off
)

// summaryRow is one way a pass ends: end does what the steps did (set
// sub-conditions, return the outcome) on a resource deployed or not.
type summaryRow struct {
	name     string
	deployed bool
	mutate   func(*herokunixv1.HerokuNixApp)
	end      func(*herokunixv1.HerokuNixApp) outcome
	// ready, reason: the Ready condition conclude must leave.
	ready   metav1.ConditionStatus
	reason  string
	requeue requeue
	after   time.Duration
}

func errEnd(err error) func(*herokunixv1.HerokuNixApp) outcome {
	return func(*herokunixv1.HerokuNixApp) outcome { return outcome{Err: err} }
}

// releasedBy records a Heroku failure on Released, as the release step does.
func releasedBy(err *stepError) func(*herokunixv1.HerokuNixApp) outcome {
	return func(app *herokunixv1.HerokuNixApp) outcome {
		return outcome{Err: (&HerokuNixAppReconciler{}).releaseError(app, err)}
	}
}

func herokuErr(kind heroku.ErrorKind, id, msg string, retry time.Duration) error {
	return &heroku.Error{Kind: kind, ID: id, Message: msg, RetryAfter: retry}
}

var summaryRows = []summaryRow{
	{
		name: "a build is running",
		end: func(app *herokunixv1.HerokuNixApp) outcome {
			setCondition(app, herokunixv1.ConditionBuilt, metav1.ConditionFalse, herokunixv1.ReasonBuildRunning, "building "+app.Spec.Flake)
			return outcome{Err: &waiting{Reason: herokunixv1.ReasonBuildRunning, Message: "building " + app.Spec.Flake, After: 30 * time.Second}}
		},
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonBuildRunning, requeue: requeueAfter, after: 30 * time.Second,
	},
	{
		name: "a release is running its release phase", deployed: true,
		end: func(app *herokunixv1.HerokuNixApp) outcome {
			app.Status.Release.Version, app.Status.Release.Name, app.Status.Release.Status = 43, "v43", heroku.ReleasePending
			msg := "release v43 is running its release phase"
			setCondition(app, herokunixv1.ConditionReleased, metav1.ConditionFalse, herokunixv1.ReasonReleasePending, msg)
			return outcome{Err: &waiting{Reason: herokunixv1.ReasonReleasePending, Message: msg, After: 10 * time.Second}}
		},
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonReleasePending, requeue: requeueAfter, after: 10 * time.Second,
	},
	{
		name: "deployed", deployed: true,
		end:   func(*herokunixv1.HerokuNixApp) outcome { return outcome{} },
		ready: metav1.ConditionTrue, reason: herokunixv1.ReasonReleased, requeue: requeueInterval,
	},
	{
		name: "released, its web dynos starting", deployed: true,
		end: func(app *herokunixv1.HerokuNixApp) outcome {
			app.Status.Serving = &herokunixv1.ServingStatus{Release: 42, State: herokunixv1.DynoStateStarting, Looks: 1, Dynos: "web.1 starting"}
			msg := "release v42 succeeded; waiting for its web dynos to come up (web.1 starting)"
			setCondition(app, herokunixv1.ConditionServing, metav1.ConditionFalse, herokunixv1.ReasonWaitingForDynos, msg)
			return outcome{Err: &waiting{Reason: herokunixv1.ReasonWaitingForDynos, Message: msg, After: 5 * time.Second}}
		},
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonWaitingForDynos, requeue: requeueAfter, after: 5 * time.Second,
	},
	{
		name: "deployed and serving", deployed: true,
		end: func(app *herokunixv1.HerokuNixApp) outcome {
			app.Status.Serving = &herokunixv1.ServingStatus{Release: 42, State: herokunixv1.DynoStateUp, Looks: 2, Dynos: "web.1 up"}
			return outcome{Err: servingVerdict(app, app.Status.Serving)}
		},
		ready: metav1.ConditionTrue, reason: herokunixv1.ReasonReleased, requeue: requeueInterval,
	},
	{
		name: "deployed with no web process", deployed: true,
		mutate: func(app *herokunixv1.HerokuNixApp) {
			app.Spec.Processes = map[string]herokunixv1.Process{"worker": {Attribute: "packages.x86_64-linux.worker", Command: []string{"bin/worker"}}}
		},
		end: func(app *herokunixv1.HerokuNixApp) outcome {
			return outcome{Err: (&HerokuNixAppReconciler{}).reconcileServing(context.Background(), &pass{app: app})}
		},
		ready: metav1.ConditionTrue, reason: herokunixv1.ReasonReleased, requeue: requeueInterval,
	},
	{
		name: "a web dyno crashed on boot", deployed: true,
		end: func(app *herokunixv1.HerokuNixApp) outcome {
			app.Status.Serving = &herokunixv1.ServingStatus{Release: 42, State: herokunixv1.DynoStateCrashed, Looks: 2, Dynos: "web.1 crashed"}
			return outcome{Err: servingVerdict(app, app.Status.Serving)}
		},
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonDynosCrashed, requeue: requeueInterval,
	},
	{
		name: "the web dynos were not up after the last look", deployed: true,
		end: func(app *herokunixv1.HerokuNixApp) outcome {
			app.Status.Serving = &herokunixv1.ServingStatus{Release: 42, State: herokunixv1.ServingGaveUp, Looks: maxDynoLooks, Dynos: "web.1 starting"}
			return outcome{Err: servingVerdict(app, app.Status.Serving)}
		},
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonDynosNotUp, requeue: requeueInterval,
	},
	{
		name: "deployed after a reconcile request", deployed: true,
		end:   func(*herokunixv1.HerokuNixApp) outcome { return outcome{RequestedAt: "2026-01-02T03:04:05Z"} },
		ready: metav1.ConditionTrue, reason: herokunixv1.ReasonReleased, requeue: requeueInterval,
	},
	{
		name: "a refresh of a moving ref failed while the release keeps running", deployed: true,
		end: func(app *herokunixv1.HerokuNixApp) outcome {
			setCondition(app, herokunixv1.ConditionBuilt, metav1.ConditionFalse, herokunixv1.ReasonBuildFailed, "build container exited 1: error: builder failed")
			return outcome{}
		},
		ready: metav1.ConditionTrue, reason: herokunixv1.ReasonReleased, requeue: requeueInterval,
	},
	{
		name: "drift observed with driftPolicy Observe", deployed: true,
		mutate: func(app *herokunixv1.HerokuNixApp) { app.Spec.DriftPolicy = herokunixv1.DriftPolicyObserve },
		end: errEnd(stalled(herokunixv1.ReasonDriftDetected, "Heroku ran %s (%q) after %s, which this resource made",
			"v43", "Deployed web (0123456789ab)", "v42")),
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonDriftDetected, requeue: requeueInterval,
	},
	{
		name: "suspended after a deploy", deployed: true,
		mutate: func(app *herokunixv1.HerokuNixApp) { app.Spec.Suspend = true },
		end:    func(*herokunixv1.HerokuNixApp) outcome { return outcome{Suspended: true, SpecDeployed: true} },
		ready:  metav1.ConditionTrue, reason: herokunixv1.ReasonReleased, requeue: requeueNever,
	},
	{
		name: "suspended after a spec change", deployed: true,
		mutate: func(app *herokunixv1.HerokuNixApp) { app.Spec.Suspend = true },
		end:    func(*herokunixv1.HerokuNixApp) outcome { return outcome{Suspended: true} },
		ready:  metav1.ConditionFalse, reason: herokunixv1.ReasonSuspended, requeue: requeueNever,
	},
	{
		name: "suspended before its first deploy",
		mutate: func(app *herokunixv1.HerokuNixApp) {
			app.Spec.Suspend = true
			app.Generation = 1
		},
		end:   func(*herokunixv1.HerokuNixApp) outcome { return outcome{Suspended: true} },
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonSuspended, requeue: requeueNever,
	},
	{
		name:  "retrying an error no step classified",
		end:   errEnd(fmt.Errorf("listing resources for app acme-shop: %w", errors.New("connection refused"))),
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonProgressing, requeue: requeueBackoff,
	},
	{
		name: "a step panicked", deployed: true,
		end: errEnd(&stepError{Reason: herokunixv1.ReasonInternalError,
			Err: errors.New("the controller failed unexpectedly (a bug, logged with its stack): assignment to entry in nil map")}),
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonInternalError, requeue: requeueBackoff,
	},
	{
		name: "the namespace refuses the build pod",
		end: errEnd(&stepError{Reason: herokunixv1.ReasonBuildPodRefused, Stalling: true,
			Err: &build.PodRefusedError{Namespace: "team-a", Level: "restricted"}}),
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonBuildPodRefused, requeue: requeueInterval,
	},
	{
		name:  "the API key ends with a newline",
		end:   errEnd(stalled(herokunixv1.ReasonCredentialsInvalid, "the key %q of Secret %s/%s %s; store the key without it (e.g. echo -n)", "apiKey", "team-a", "heroku", "ends with a newline")),
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonCredentialsInvalid, requeue: requeueInterval,
	},
	{
		name: "rate limited by Heroku", deployed: true,
		end: releasedBy(herokuError("reading the releases since v42",
			herokuErr(heroku.KindRateLimited, "rate_limit", "Your account reached the API rate limit", time.Minute))),
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonRateLimited, requeue: requeueAfter, after: time.Minute,
	},
	{
		name:  "Heroku unavailable",
		end:   releasedBy(herokuError("releasing images", herokuErr(heroku.KindUnavailable, "unavailable", "Service Unavailable", 0))),
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonHerokuUnavailable, requeue: requeueBackoff,
	},
	{
		name: "Heroku accepted the images but made no release (retried)",
		end: releasedBy(&stepError{Reason: herokunixv1.ReasonReleaseFailed, RetryAfter: time.Minute,
			Err: errors.New("the images were accepted, but Heroku lists no release")}),
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonReleaseFailed, requeue: requeueAfter, after: time.Minute,
	},
	{
		name: "being deleted while scaling to zero is retried", deployed: true,
		mutate: func(app *herokunixv1.HerokuNixApp) {
			app.Spec.DeletionPolicy = herokunixv1.DeletionPolicyScaleToZero
			app.DeletionTimestamp = &metav1.Time{Time: testTime}
			app.Finalizers = []string{herokunixv1.Finalizer}
		},
		end: errEnd(&stepError{Reason: herokunixv1.ReasonDeleting, RetryAfter: 30 * time.Second,
			Err: fmt.Errorf("scaling to zero before deletion: %w", herokuErr(heroku.KindUnavailable, "unavailable", "Service Unavailable", 0))}),
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonDeleting, requeue: requeueAfter, after: 30 * time.Second,
	},
	{
		name: "the build failed",
		end: func(app *herokunixv1.HerokuNixApp) outcome {
			want := build.DesiredFor(app, testTime, false)
			return outcome{Err: (&HerokuNixAppReconciler{}).buildFailed(&pass{app: app}, want, "error: attribute 'web' missing")}
		},
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonBuildFailed, requeue: requeueInterval,
	},
	{
		name: "the build pod was evicted (retried)",
		end: func(app *herokunixv1.HerokuNixApp) outcome {
			want := build.DesiredFor(app, testTime, false)
			app.Status.Build = &herokunixv1.BuildStatus{Hash: want.SpecHash, Job: want.Name, TransientFailures: 1,
				StartTime: &metav1.Time{Time: testTime}, CompletionTime: &metav1.Time{Time: testTime},
				RetryTime: &metav1.Time{Time: testTime.Add(30 * time.Second)}}
			app.Status.Build.Message = build.TransientEvicted + ": build job failed: BackoffLimitExceeded: Job has reached the specified backoff limit"
			return outcome{Err: (&HerokuNixAppReconciler{}).buildFailed(&pass{app: app, now: testTime}, want, app.Status.Build.Message)}
		},
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonBuildFailed, requeue: requeueAfter, after: 30 * time.Second,
	},
	{
		name:  "the API-key Secret is missing",
		end:   errEnd(stalled(herokunixv1.ReasonCredentialsNotFound, "Secret %s/%s not found", "team-a", "heroku")),
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonCredentialsNotFound, requeue: requeueInterval,
	},
	{
		name:  "the Heroku app is not on the container stack",
		end:   releasedBy(herokuError("reading Heroku app acme-shop", &heroku.StackError{App: "acme-shop", Stack: "heroku-24", BuildStack: "heroku-24"})),
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonStackNotContainer, requeue: requeueInterval,
	},
	{
		name:  "the Heroku app is a Fir app",
		end:   releasedBy(herokuError("reading Heroku app acme-shop before building", &heroku.GenerationError{App: "acme-shop", Generation: heroku.GenerationFir})),
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonUnsupportedGeneration, requeue: requeueInterval,
	},
	{
		name:  "the Heroku app does not exist",
		end:   releasedBy(herokuError("reading Heroku app acme-shop", herokuErr(heroku.KindNotFound, "not_found", "Couldn't find that app.", 0))),
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonAppNotFound, requeue: requeueInterval,
	},
	{
		name:  "the API key is refused",
		end:   releasedBy(herokuError("reading Heroku app acme-shop", herokuErr(heroku.KindUnauthorized, "unauthorized", "Invalid credentials provided.", 0))),
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonUnauthorized, requeue: requeueInterval,
	},
	{
		name:  "Heroku refused the release",
		end:   releasedBy(herokuError("releasing images", herokuErr(heroku.KindInvalidParams, "invalid_params", "no images to release", 0))),
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonReleaseFailed, requeue: requeueInterval,
	},
	{
		name: "the release phase failed", deployed: true,
		end: func(app *herokunixv1.HerokuNixApp) outcome {
			app.Status.Release.Version, app.Status.Release.Name, app.Status.Release.Status = 43, "v43", heroku.ReleaseFailed
			return outcome{Err: releasePhaseFailed(app)}
		},
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonReleasePhaseFailed, requeue: requeueInterval,
	},
	{
		name: "a Secret that spec.config reads is missing", deployed: true,
		end:   errEnd(stalled(herokunixv1.ReasonConfigSourceNotFound, "Secret %s/%s not found (config var %s)", "team-a", "shop-db", "DATABASE_URL")),
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonConfigSourceNotFound, requeue: requeueInterval,
	},
	{
		name: "the manager may not read the key's Secret", deployed: true,
		end: errEnd(readForbidden(apierrors.NewForbidden(corev1.Resource("secrets"), "heroku", errors.New("RBAC: access denied")),
			"Secret", "team-a", "heroku", "spec.credentialsSecretRef")),
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonReadForbidden, requeue: requeueInterval,
	},
	{
		name: "spec.config is over Heroku's 32 kB", deployed: true,
		end: errEnd(stalled(herokunixv1.ReasonConfigInvalid, "the config vars in spec.config hold %d bytes; Heroku allows %d for all of an app's config vars",
			40000, maxConfigBytes)),
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonConfigInvalid, requeue: requeueInterval,
	},
	{
		name:   "the promotion source does not exist",
		mutate: promoting,
		end: func(app *herokunixv1.HerokuNixApp) outcome {
			return outcome{Err: (&HerokuNixAppReconciler{}).promotionStalled(app, "HerokuNixApp %s/%s (spec.promoteFrom) not found", "team-a", "staging")}
		},
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonPromotionSourceNotFound, requeue: requeueInterval,
	},
	{
		name:   "the promotion source is not Ready",
		mutate: promoting,
		end: func(app *herokunixv1.HerokuNixApp) outcome {
			msg := "waiting for HerokuNixApp staging to be Ready before promoting its images"
			setCondition(app, herokunixv1.ConditionBuilt, metav1.ConditionFalse, herokunixv1.ReasonPromotionSourceNotReady, msg)
			return outcome{Err: &waiting{Reason: herokunixv1.ReasonPromotionSourceNotReady, Message: msg}}
		},
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonPromotionSourceNotReady, requeue: requeueNever,
	},
	{
		name:   "a promotion waits for approval",
		mutate: promoting,
		end: func(app *herokunixv1.HerokuNixApp) outcome {
			msg := "promoting revision 9f2c1e0aa1b2 of staging waits for approval: set the annotation herokunix.dev/approve-promotion=9f2c1e0aa1b2c3d4e5f60718293a4b5c6d7e8f90"
			setCondition(app, herokunixv1.ConditionBuilt, metav1.ConditionFalse, herokunixv1.ReasonPromotionAwaitingApproval, msg)
			return outcome{Err: &waiting{Reason: herokunixv1.ReasonPromotionAwaitingApproval, Message: msg}}
		},
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonPromotionAwaitingApproval, requeue: requeueNever,
	},
	{
		name: "promoted and released", deployed: true,
		mutate: func(app *herokunixv1.HerokuNixApp) {
			promoting(app)
			app.Status.Build = nil
			app.Status.Promotion = &herokunixv1.PromotionStatus{Source: "staging", SourceApp: "acme-shop-staging", Revision: app.Status.Revision}
			setCondition(app, herokunixv1.ConditionBuilt, metav1.ConditionTrue, herokunixv1.ReasonPromoted, promotedMessage(app))
		},
		end:   func(*herokunixv1.HerokuNixApp) outcome { return outcome{} },
		ready: metav1.ConditionTrue, reason: herokunixv1.ReasonReleased, requeue: requeueInterval,
	},
	{
		name:   "copying the promoted images failed",
		mutate: promoting,
		end: func(app *herokunixv1.HerokuNixApp) outcome {
			return outcome{Err: (&HerokuNixAppReconciler{}).copyFailed(app, "staging", errors.New("reading registry.heroku.com/acme-shop-staging/web@sha256:…: unexpected EOF"))}
		},
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonPromotionCopyFailed, requeue: requeueAfter, after: time.Minute,
	},
	{
		name: "the release phase failed with output", deployed: true,
		end: func(app *herokunixv1.HerokuNixApp) outcome {
			app.Status.Release.Version, app.Status.Release.Name, app.Status.Release.Status = 43, "v43", heroku.ReleaseFailed
			app.Status.Release.OutputTail = sanitizeOutputTail("Running migrations\n\x1b[31mERROR: relation \"users\" does not exist\x1b[0m\n", testAPIKey)
			return outcome{Err: releasePhaseFailed(app)}
		},
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonReleasePhaseFailed, requeue: requeueInterval,
	},
	{
		name: "another resource already deploys the Heroku app",
		end: errEnd(stalled(herokunixv1.ReasonAppConflict, "Heroku app %s is deployed by %s released to it first; delete one of them",
			"acme-shop", "another HerokuNixApp, in a different namespace, which")),
		ready: metav1.ConditionFalse, reason: herokunixv1.ReasonAppConflict, requeue: requeueInterval,
	},
}

var testTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// promoting makes the row's resource take its images from "staging".
func promoting(app *herokunixv1.HerokuNixApp) {
	app.Spec.Flake, app.Spec.Processes = "", nil
	app.Spec.PromoteFrom = &herokunixv1.PromotionSource{Name: "staging", RequireApproval: true}
}

// summaryApp is the resource of the rows: never deployed, or deployed as
// release v42 with every sub-condition True.
func summaryApp(deployed bool) *herokunixv1.HerokuNixApp {
	app := testApp()
	app.TypeMeta = metav1.TypeMeta{APIVersion: herokunixv1.GroupVersion.String(), Kind: "HerokuNixApp"}
	app.Generation = 2
	app.Spec.Processes["web"] = herokunixv1.Process{Attribute: "packages.x86_64-linux.web", Command: []string{"bin/server"}}
	if !deployed {
		return app
	}
	rev := "9f2c1e0aa1b2c3d4e5f60718293a4b5c6d7e8f90"
	want := build.DesiredFor(app, testTime, false)
	app.Status = herokunixv1.HerokuNixAppStatus{
		ObservedGeneration: 2,
		Revision:           rev, ShortRevision: rev[:12], LockedFlake: "github:acme/shop/" + rev,
		Build: &herokunixv1.BuildStatus{Hash: want.SpecHash, Job: want.Name, SucceededHash: want.SpecHash,
			StartTime: &metav1.Time{Time: testTime}, CompletionTime: &metav1.Time{Time: testTime}},
		Images:  map[string]herokunixv1.ImageStatus{"web": {ImageID: "sha256:" + rev + rev[:24], Digest: "sha256:" + rev[:24] + rev}},
		Release: &herokunixv1.ReleaseStatus{ID: "01234567-89ab-cdef-0123-456789abcdef", Version: 42, Name: "v42", Status: heroku.ReleaseSucceeded},
	}
	setCondition(app, herokunixv1.ConditionBuilt, metav1.ConditionTrue, herokunixv1.ReasonBuildSucceeded, "built "+app.Status.LockedFlake)
	setCondition(app, herokunixv1.ConditionReleased, metav1.ConditionTrue, herokunixv1.ReasonReleased, "release v42 of acme-shop succeeded")
	setCondition(app, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased, readyMessage(app))
	return app
}

// TestConcludeMapsEachOutcomeToConditionsAndRequeue runs conclude over
// every row and checks the result against statusesFile, which config/argocd
// reads (go test ./controllers -run Conclude -update rewrites it).
func TestConcludeMapsEachOutcomeToConditionsAndRequeue(t *testing.T) {
	type rendered struct {
		Name   string                    `json:"name"`
		Object *herokunixv1.HerokuNixApp `json:"object"`
	}
	var out []rendered
	for _, row := range summaryRows {
		t.Run(row.name, func(t *testing.T) {
			app := summaryApp(row.deployed)
			if row.mutate != nil {
				row.mutate(app)
			}
			end := row.end(app)
			res, err := conclude(app, end, testTime)

			ready := findCondition(app, herokunixv1.ConditionReady)
			if ready == nil || ready.Status != row.ready || ready.Reason != row.reason {
				t.Errorf("Ready = %+v, want %s %s", ready, row.ready, row.reason)
			}
			if app.Status.ObservedGeneration != app.Generation {
				t.Errorf("observedGeneration %d, want %d", app.Status.ObservedGeneration, app.Generation)
			}
			stalledC, reconciling := findCondition(app, herokunixv1.ConditionStalled), findCondition(app, herokunixv1.ConditionReconciling)
			if stalledC != nil && reconciling != nil {
				t.Errorf("both Stalled and Reconciling: %+v", app.Status.Conditions)
			}
			for _, lead := range []*metav1.Condition{stalledC, reconciling} {
				if lead != nil && (lead.Status != metav1.ConditionTrue || ready.Reason != lead.Reason || ready.Message != lead.Message) {
					t.Errorf("Ready %+v does not carry %s %+v", ready, lead.Type, lead)
				}
			}
			failed := row.requeue == requeueBackoff
			if got := app.Status.LastHandledReconcileAt; end.RequestedAt != "" && (got == end.RequestedAt) == failed {
				t.Errorf("lastHandledReconcileAt %q after request %q (failed: %v)", got, end.RequestedAt, failed)
			}
			interval := app.Spec.IntervalDuration()
			switch row.requeue {
			case requeueNever:
				if err != nil || res.RequeueAfter != 0 {
					t.Errorf("result %+v, %v; want no requeue", res, err)
				}
			case requeueInterval:
				if err != nil || res.RequeueAfter < interval-interval/10 || res.RequeueAfter > interval+interval/10 {
					t.Errorf("result %+v, %v; want about %s", res, err, interval)
				}
			case requeueAfter:
				if err != nil || res.RequeueAfter != row.after {
					t.Errorf("result %+v, %v; want after %s", res, err, row.after)
				}
			case requeueBackoff:
				if err == nil || res.RequeueAfter != 0 {
					t.Errorf("result %+v, %v; want an error for the back-off", res, err)
				}
			}

			for i := range app.Status.Conditions {
				app.Status.Conditions[i].LastTransitionTime = metav1.Time{Time: testTime}
			}
			out = append(out, rendered{Name: row.name, Object: app})
		})
	}
	got, err := yaml.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	got = append([]byte("# Written by TestConcludeMapsEachOutcomeToConditionsAndRequeue (go test ./controllers -run Conclude -update).\n"), got...)
	if *update {
		if err := os.WriteFile(statusesFile, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(statusesFile)
	if err != nil {
		t.Fatalf("%v (go test ./controllers -run Conclude -update writes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is not what conclude writes; rerun with -update and review the diff", statusesFile)
	}
}

func findCondition(app *herokunixv1.HerokuNixApp, typ string) *metav1.Condition {
	for i := range app.Status.Conditions {
		if app.Status.Conditions[i].Type == typ {
			return &app.Status.Conditions[i]
		}
	}
	return nil
}
