// Package controllers holds the HerokuNixApp reconciler.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/build"
)

// HerokuNixAppReconciler deploys HerokuNixApps: build the flake, push the
// images, release them on Heroku, report on status. NewReconciler makes one.
type HerokuNixAppReconciler struct {
	client.Client
	// APIReader reads Secrets straight from the API server (they are not
	// cached).
	APIReader client.Reader
	Recorder  events.EventRecorder
	Builder   build.Builder
	Heroku    *HerokuClients
	// retries spaces the retries of resources Heroku turns away.
	retries herokuRetries
	// secretKeys spares reading an unchanged Secret again.
	secretKeys secretKeys
	// configMemo spares reading the Secrets and ConfigMaps of an unchanged
	// spec.config again.
	configMemo configMemo
	// Now is the clock; default time.Now.
	Now func() time.Time
	// DeletionGracePeriod bounds how long a deletion waits for what
	// ScaleToZero needs (credentials, Heroku) before letting go.
	DeletionGracePeriod time.Duration
	// ReleasePollInterval is how often a pending release is looked at.
	ReleasePollInterval time.Duration
	// BuildRetryBase is the first wait before a build that failed for a
	// reason that may pass is retried (zero: buildRetryBase).
	BuildRetryBase time.Duration
	// RegistryHost and InsecureRegistry say where promotions copy images
	// (default Heroku's registry, over HTTPS).
	RegistryHost     string
	InsecureRegistry bool
	// DynoPollInterval is how often a release's starting web dynos are
	// looked at (default 5 s; at most 24 looks per release).
	DynoPollInterval time.Duration
}

// ReconcilerConfig is what the reconciler needs besides a manager.
type ReconcilerConfig struct {
	// Builder runs builds: a build.JobBuilder (build.NewJobBuilder) or a build.LocalBuilder.
	Builder build.Builder
	// NewHeroku makes the Heroku client of an API key; one is made per key.
	NewHeroku func(apiKey string) (HerokuAPI, error)
	// DeletionGracePeriod, ReleasePollInterval and DynoPollInterval: see
	// the reconciler's fields (zero: their defaults).
	DeletionGracePeriod time.Duration
	ReleasePollInterval time.Duration
	DynoPollInterval    time.Duration
	// HerokuRetryBase is the first back-off of a resource Heroku turns
	// away (rate limited, unavailable); it doubles up to 10 min. Zero: 5 s.
	HerokuRetryBase time.Duration
	// BuildRetryBase is the first wait before a build that failed for a
	// reason that may pass (an evicted pod, a deadline, the network) is
	// retried; it doubles up to 10 min. Zero: 30 s.
	BuildRetryBase time.Duration
	// RegistryHost and InsecureRegistry: see the reconciler's fields.
	RegistryHost     string
	InsecureRegistry bool
}

// NewReconciler wires a reconciler to mgr's client, its uncached reader
// (Secrets are read from the API server, never from a cache) and an event
// recorder.
func NewReconciler(mgr ctrl.Manager, cfg ReconcilerConfig) (*HerokuNixAppReconciler, error) {
	switch {
	case mgr.GetAPIReader() == nil:
		return nil, errors.New("the manager has no API reader, which Secrets are read through")
	case cfg.Builder == nil:
		return nil, errors.New("no builder")
	case cfg.NewHeroku == nil:
		return nil, errors.New("no Heroku client maker")
	}
	return &HerokuNixAppReconciler{
		Client:              mgr.GetClient(),
		APIReader:           mgr.GetAPIReader(),
		Recorder:            mgr.GetEventRecorder("herokunix"),
		Builder:             cfg.Builder,
		Heroku:              &HerokuClients{New: cfg.NewHeroku},
		DeletionGracePeriod: cfg.DeletionGracePeriod,
		ReleasePollInterval: cfg.ReleasePollInterval,
		BuildRetryBase:      cfg.BuildRetryBase,
		DynoPollInterval:    cfg.DynoPollInterval,
		retries:             herokuRetries{base: cfg.HerokuRetryBase},
		RegistryHost:        cfg.RegistryHost,
		InsecureRegistry:    cfg.InsecureRegistry,
	}, nil
}

// +kubebuilder:rbac:groups=herokunix.dev,resources=herokunixapps,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=herokunix.dev,resources=herokunixapps/status,verbs=get;patch
// +kubebuilder:rbac:groups=herokunix.dev,resources=herokunixapps/finalizers,verbs=update
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get
// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=get;list;create;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// pass carries what one reconcile pass learnt from step to step. It holds
// data only: how a step ended travels on its returned error.
type pass struct {
	app *herokunixv1.HerokuNixApp
	// before is the state the pass's status patch is computed from; a
	// step that patches status early (the release intent) updates it.
	before *herokunixv1.HerokuNixApp
	now    time.Time
	apiKey string
	heroku HerokuAPI
	// forceRefresh asks for a re-resolution of a moving ref now.
	forceRefresh bool
	// requestedAt is a new reconcile-now annotation value this pass handles.
	requestedAt string
	// requestWaits says a request came while a build ran that may have
	// resolved the flake before the change the request announces: it stays
	// pending, for the next build to take up soon.
	requestWaits bool
	// secrets are the versions of the Secrets the build reads.
	secrets build.SecretVersions
	// appID is the Heroku app's id when the pass read the app.
	appID string
	// buildRetry, when set, is how soon a background build that failed
	// for a reason that may pass is retried.
	buildRetry time.Duration
}

// step is one named part of a pass. A nil error lets the next step run;
// any error ends the pass: a *waiting (something is in progress), a
// *stepError (a reason for the conditions, stalling or retried) or any
// other error (retried with back-off).
type step func(ctx context.Context, p *pass) error

// Reconcile applies deletion, adds the finalizer and honours suspend, then
// runs the steps in order, and patches status once at the end.
func (r *HerokuNixAppReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	app := &herokunixv1.HerokuNixApp{}
	if err := r.Get(ctx, req.NamespacedName, app); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := app.DeepCopy()
	p := &pass{app: app, before: before, now: r.now()}
	if app.DeletionTimestamp != nil {
		if err := r.deletePass(ctx, p); err != nil {
			return r.summarize(ctx, p, before, outcome{Err: err})
		}
		r.retries.backOff(req.NamespacedName, nil)
		return ctrl.Result{}, nil // the finalizer is gone: no status to patch
	}
	return r.summarize(ctx, p, before, r.runPass(ctx, p))
}

// deletePass applies deletion; a panic in it is an error, not a pass that
// let go.
func (r *HerokuNixAppReconciler) deletePass(ctx context.Context, p *pass) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = panicError(ctx, v)
		}
	}()
	return r.reconcileDeletion(ctx, p)
}

// panicError turns a panic of a step into a retried InternalError, so the
// summary that runs after the steps never takes a pass that broke off for
// one that ended well (controller-runtime recovers too, but only after the
// status is patched).
func panicError(ctx context.Context, v any) error {
	log.FromContext(ctx).Error(fmt.Errorf("%v", v), "a reconcile step panicked; retrying", "stack", string(debug.Stack()))
	return &stepError{Reason: herokunixv1.ReasonInternalError,
		Err: fmt.Errorf("the controller failed unexpectedly (a bug, logged with its stack): %v", v)}
}

// runPass runs a pass of a resource that is not being deleted.
func (r *HerokuNixAppReconciler) runPass(ctx context.Context, p *pass) (end outcome) {
	defer func() {
		if v := recover(); v != nil {
			end = outcome{Err: panicError(ctx, v), RequestedAt: p.requestedAt}
		}
	}()
	if err := r.reconcileFinalizer(ctx, p); err != nil {
		return outcome{Err: err}
	}
	if p.app.Spec.Suspend {
		return suspendedOutcome(p)
	}
	for _, s := range []step{
		r.reconcileRequestedAt,
		r.reconcileConflict,
		r.reconcileCredentials,
		r.reconcileImages,
		r.reconcileConfig,
		r.reconcileRelease,
		r.reconcileFormation,
		r.reconcileServing,
	} {
		if err := s(ctx, p); err != nil {
			return outcome{Err: err, RequestedAt: p.requestedAt, RequestWaits: p.requestWaits, BuildRetry: p.buildRetry}
		}
	}
	return outcome{RequestedAt: p.requestedAt, RequestWaits: p.requestWaits, BuildRetry: p.buildRetry}
}

// suspendedOutcome ends a pass at spec.suspend: Heroku is left as it is
// and no build runs. It says whether the images of this spec run, so a
// deployed app stays Ready while suspended.
func suspendedOutcome(p *pass) outcome {
	if from := p.app.Spec.PromoteFrom; from != nil {
		pr := p.app.Status.Promotion
		return outcome{Suspended: true, SpecDeployed: pr != nil && pr.Source == from.Name && p.app.Status.Release != nil}
	}
	b := p.app.Status.Build
	deployed := b != nil && b.SucceededHash == build.DesiredFor(p.app, p.now, false).SpecHash
	return outcome{Suspended: true, SpecDeployed: deployed}
}

func (r *HerokuNixAppReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// outcome is how a pass ended.
type outcome struct {
	// Err is nil when every step ran, else what ended the pass.
	Err error
	// Suspended says the pass stopped at spec.suspend; SpecDeployed then
	// says whether the images built from this spec run on Heroku.
	Suspended, SpecDeployed bool
	// RequestedAt is the reconcile-now annotation value the pass handled.
	RequestedAt string
	// RequestWaits says a reconcile request is left for the next build,
	// which the next pass starts soon.
	RequestWaits bool
	// BuildRetry, when set, is when a failed background build is retried.
	BuildRetry time.Duration
}

// summarize concludes the pass, patches status once, emits an event when
// Ready changed, and logs a retried error.
func (r *HerokuNixAppReconciler) summarize(ctx context.Context, p *pass, before *herokunixv1.HerokuNixApp, end outcome) (ctrl.Result, error) {
	app := p.app
	r.retries.backOff(client.ObjectKeyFromObject(app), end.Err)
	res, err := conclude(app, end, p.now)
	r.eventOnReadyChange(before, app)
	// A pass that changed nothing (a retry failing alike) writes nothing.
	if !equality.Semantic.DeepEqual(before.Status, app.Status) {
		if perr := r.Status().Patch(ctx, app, client.MergeFrom(before)); perr != nil && !apierrors.IsNotFound(perr) {
			return ctrl.Result{}, errors.Join(err, fmt.Errorf("patching status: %w", perr))
		}
	}
	if err != nil {
		log.FromContext(ctx).Info("reconcile will be retried", "reason", reasonOf(err), "error", err.Error())
	}
	return res, err
}

// conclude computes Ready, Reconciling and Stalled from how the pass at
// now ended, and when to look again; an error it returns is retried with
// the controller's back-off. It does no I/O.
func conclude(app *herokunixv1.HerokuNixApp, end outcome, now time.Time) (ctrl.Result, error) {
	var res ctrl.Result
	err := end.Err
	var se *stepError
	var w *waiting
	isStep := errors.As(err, &se)
	isWait := errors.As(err, &w)
	failed := err != nil && !isWait && !(isStep && se.Stalling)
	switch {
	case isWait:
		markReconciling(app, w.Reason, w.Message)
		res.RequeueAfter, err = w.After, nil
	case isStep && se.Stalling:
		// Observed drift ends here too: only a person can settle it
		// (kstatus Failed), though the next resync still looks again.
		markStalled(app, se.Reason, se.Error())
		// Watches bring most fixes (spec, Secret); what changes on Heroku's
		// side (stack, app, key) or upstream (a moving ref) is seen on resync.
		res.RequeueAfter = jitter(app.Spec.IntervalDuration())
		if se.Reason == herokunixv1.ReasonDriftDetected {
			// Drift is looked for again when the next look is due.
			res.RequeueAfter = resyncAfter(app, now)
		}
		err = nil
	case isStep:
		markReconciling(app, se.Reason, "retrying: "+se.conditionMessage())
		if se.RetryAfter > 0 {
			res.RequeueAfter, err = se.RetryAfter, nil
		}
	case err != nil:
		markReconciling(app, herokunixv1.ReasonProgressing, "retrying: "+err.Error())
	case end.Suspended:
		// A deployed app stays Ready while suspended (its release still
		// runs), so kstatus sees it Current; one never deployed says why not.
		meta.RemoveStatusCondition(&app.Status.Conditions, herokunixv1.ConditionReconciling)
		meta.RemoveStatusCondition(&app.Status.Conditions, herokunixv1.ConditionStalled)
		if !end.SpecDeployed || !meta.IsStatusConditionTrue(app.Status.Conditions, herokunixv1.ConditionReady) {
			setCondition(app, herokunixv1.ConditionReady, metav1.ConditionFalse, herokunixv1.ReasonSuspended,
				"reconciliation is suspended; this spec is not deployed")
		}
	default:
		meta.RemoveStatusCondition(&app.Status.Conditions, herokunixv1.ConditionReconciling)
		meta.RemoveStatusCondition(&app.Status.Conditions, herokunixv1.ConditionStalled)
		setCondition(app, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased, readyMessage(app))
		res.RequeueAfter = resyncAfter(app, now)
	}
	if end.RequestWaits && err == nil && (res.RequeueAfter == 0 || res.RequeueAfter > requestRequeue) {
		res.RequeueAfter = requestRequeue
	}
	if end.BuildRetry > 0 && err == nil && (res.RequeueAfter == 0 || res.RequeueAfter > end.BuildRetry) {
		res.RequeueAfter = end.BuildRetry
	}
	app.Status.ObservedGeneration = app.Generation
	if !failed && end.RequestedAt != "" {
		// Recorded only once handled, so a failed pass does not lose it.
		app.Status.LastHandledReconcileAt = end.RequestedAt
	}
	return res, err
}

// requestRequeue is how soon a pass comes back for a reconcile request
// left for the next build.
const requestRequeue = time.Second

func reasonOf(err error) string {
	var se *stepError
	if errors.As(err, &se) {
		return se.Reason
	}
	return herokunixv1.ReasonProgressing
}

// jitter spreads resyncs of many resources over ±10% of the interval (d >
// 0: IntervalDuration defaults it), so they do not spend the Heroku budget
// in bursts.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + time.Duration(rand.Int64N(int64(d/5)+1))
}

// resyncAfter is how long a resource at rest waits for its next pass:
// until its next look for drift is due (an interval after the last, not
// sooner: a pass before would not look) or the next refresh build of its
// moving ref, whichever comes first, plus up to a tenth of the interval so
// that resources deployed together spread their Heroku reads out.
func resyncAfter(app *herokunixv1.HerokuNixApp, now time.Time) time.Duration {
	interval := app.Spec.IntervalDuration()
	next := now.Add(interval)
	if last := app.Status.LastDriftCheck; last != nil && last.Time.Add(interval).Before(next) {
		next = last.Time.Add(interval)
	}
	if due, ok := build.RefreshDue(app); ok && due.Before(next) {
		next = due
	}
	return max(0, next.Sub(now)) + time.Duration(rand.Int64N(int64(interval/10)+1))
}

func readyMessage(app *herokunixv1.HerokuNixApp) string {
	msg := "deployed"
	if rel := app.Status.Release; rel != nil {
		msg = fmt.Sprintf("release %s of %s runs %s", rel.Name, app.Spec.AppName, app.Status.ShortRevision)
		if app.Status.ShortRevision == "" {
			msg = fmt.Sprintf("release %s of %s runs %s", rel.Name, app.Spec.AppName, app.Status.LockedFlake)
		}
		if pr := app.Status.Promotion; pr != nil && app.Spec.PromoteFrom != nil {
			msg += " (promoted from " + pr.Source + ")"
		}
		if s := app.Status.Serving; s != nil && s.Release == rel.Version && s.State == herokunixv1.DynoStateUp {
			msg += ", serving (" + s.Dynos + ")"
		}
	}
	if c := meta.FindStatusCondition(app.Status.Conditions, herokunixv1.ConditionBuilt); c != nil && c.Reason == herokunixv1.ReasonBuildFailed {
		msg += "; the latest refresh failed to build (see Built)"
	}
	return msg
}

// eventOnReadyChange records an event when Ready's status or reason changed,
// so `kubectl describe` tells the story of a deploy without repeating it.
// It is the one event of what Ready shows (a build running, a failure);
// steps record only what it does not (a release made, a scale, a drift
// corrected, a background refresh).
func (r *HerokuNixAppReconciler) eventOnReadyChange(before, after *herokunixv1.HerokuNixApp) {
	if r.Recorder == nil {
		return
	}
	old := meta.FindStatusCondition(before.Status.Conditions, herokunixv1.ConditionReady)
	cur := meta.FindStatusCondition(after.Status.Conditions, herokunixv1.ConditionReady)
	if cur == nil || (old != nil && old.Status == cur.Status && old.Reason == cur.Reason) {
		return
	}
	typ := corev1.EventTypeNormal
	if cur.Status == metav1.ConditionFalse && isFailureReason(cur.Reason) {
		typ = corev1.EventTypeWarning
	}
	r.Recorder.Eventf(after, nil, typ, cur.Reason, "Reconcile", "%s", cur.Message)
}

func isFailureReason(reason string) bool {
	switch reason {
	case herokunixv1.ReasonBuildRunning, herokunixv1.ReasonReleasePending, herokunixv1.ReasonProgressing,
		herokunixv1.ReasonSuspended, herokunixv1.ReasonDeleting,
		herokunixv1.ReasonPromotionSourceNotReady, herokunixv1.ReasonPromotionAwaitingApproval, herokunixv1.ReasonWaitingForDynos:
		return false
	}
	return true
}

func setCondition(app *herokunixv1.HerokuNixApp, typ string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&app.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: truncate(msg, 1024), ObservedGeneration: app.Generation,
	})
}

// markStalled: nothing will progress until something changes (kstatus).
func markStalled(app *herokunixv1.HerokuNixApp, reason, msg string) {
	meta.RemoveStatusCondition(&app.Status.Conditions, herokunixv1.ConditionReconciling)
	setCondition(app, herokunixv1.ConditionStalled, metav1.ConditionTrue, reason, msg)
	setCondition(app, herokunixv1.ConditionReady, metav1.ConditionFalse, reason, msg)
}

// markReconciling: work is in progress or being retried (kstatus).
func markReconciling(app *herokunixv1.HerokuNixApp, reason, msg string) {
	meta.RemoveStatusCondition(&app.Status.Conditions, herokunixv1.ConditionStalled)
	setCondition(app, herokunixv1.ConditionReconciling, metav1.ConditionTrue, reason, msg)
	setCondition(app, herokunixv1.ConditionReady, metav1.ConditionFalse, reason, msg)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n+len("…"):]
}
