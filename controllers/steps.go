package controllers

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
	"unicode"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/artifact"
	"github.com/herokunix/herokunix/internal/build"
	"github.com/herokunix/herokunix/internal/metrics"
)

// reconcileFinalizer adds the finalizer that lets deletion apply the
// deletion policy. It patches metadata only.
func (r *HerokuNixAppReconciler) reconcileFinalizer(ctx context.Context, p *pass) error {
	if controllerutil.ContainsFinalizer(p.app, herokunixv1.Finalizer) {
		return nil
	}
	patch := client.MergeFrom(p.app.DeepCopy())
	controllerutil.AddFinalizer(p.app, herokunixv1.Finalizer)
	if err := r.Patch(ctx, p.app, patch); err != nil {
		return fmt.Errorf("adding finalizer: %w", err)
	}
	return nil
}

// reconcileRequestedAt handles the reconcile-now annotation: a new value forces
// a re-resolution of a moving ref (or a retry of a failed build), and is
// recorded as handled when the pass ends without error.
func (r *HerokuNixAppReconciler) reconcileRequestedAt(_ context.Context, p *pass) error {
	if v, ok := p.app.Annotations[herokunixv1.ReconcileRequestAnnotation]; ok && v != p.app.Status.LastHandledReconcileAt {
		p.forceRefresh, p.requestedAt = true, v
	}
	return nil
}

// reconcileConflict stalls this resource when another one owns the same
// Heroku app (herokuAppOwner): two writers of one app would undo each
// other's releases. It runs before anything is built, so a resource that
// came second builds nothing. One in another namespace is not named: the
// reader of this resource may not see that namespace, and its names are
// not this tenant's to learn.
func (r *HerokuNixAppReconciler) reconcileConflict(ctx context.Context, p *pass) error {
	var same herokunixv1.HerokuNixAppList
	if err := r.List(ctx, &same, client.MatchingFields{indexAppName: p.app.Spec.AppName}); err != nil {
		return fmt.Errorf("listing resources for app %s: %w", p.app.Spec.AppName, err)
	}
	owner := herokuAppOwner(same.Items, p.app.UID)
	if owner == nil || owner.UID == p.app.UID {
		return nil
	}
	who := "another HerokuNixApp, in a different namespace,"
	if owner.Namespace == p.app.Namespace {
		who = fmt.Sprintf("HerokuNixApp %s (this namespace), which", owner.Name)
	} else {
		who += " which"
	}
	return stalled(herokunixv1.ReasonAppConflict, "Heroku app %s is deployed by %s released to it first; delete one of them",
		p.app.Spec.AppName, who)
}

// herokuAppOwner picks the resource that owns a Heroku app among those
// naming it: the one with the earliest proof of a release there (appProof),
// ties by creation then namespace/name; none when none has proof. A
// resource without proof (never released: perhaps without working
// credentials) owns nothing and blocks no one, so a resource made first
// elsewhere cannot squat an app. Ones being deleted count only when asking.
func herokuAppOwner(apps []herokunixv1.HerokuNixApp, asking types.UID) *herokunixv1.HerokuNixApp {
	var owner *herokunixv1.HerokuNixApp
	for i := range apps {
		a := &apps[i]
		if (a.DeletionTimestamp != nil && a.UID != asking) || !hasAppProof(a) {
			continue
		}
		if owner == nil || provedFirst(a, owner) {
			owner = a
		}
	}
	return owner
}

// appProof is the version of the first release a resource made on its
// Heroku app: status.appClaim, or for a resource released to before
// claims were recorded, its release (until its next pass records a claim).
func appProof(app *herokunixv1.HerokuNixApp) int {
	if c := app.Status.AppClaim; c != nil {
		return c.Version
	}
	return app.Status.Release.Version
}

func hasAppProof(app *herokunixv1.HerokuNixApp) bool {
	return app.Status.AppClaim != nil || app.Status.Release != nil
}

// provedFirst says whether a released to the app before b: the earlier
// release version (Heroku numbers an app's releases in order), then the
// older resource, then namespace/name, so every resource agrees.
func provedFirst(a, b *herokunixv1.HerokuNixApp) bool {
	if av, bv := appProof(a), appProof(b); av != bv {
		return av < bv
	}
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
}

// claimApp records status.appClaim once the resource has a release on its
// Heroku app and no claim for this app: the app's id (read with the
// resource's credentials, the pass's read when there was one) and the
// release. It passes err, the release step's end, on; a failed read of the
// app leaves the claim for the next pass.
func (r *HerokuNixAppReconciler) claimApp(ctx context.Context, p *pass, err error) error {
	app := p.app
	rel := app.Status.Release
	if c := app.Status.AppClaim; rel == nil || (c != nil && (p.appID == "" || p.appID == c.AppID || rel.ID == c.ReleaseID)) {
		return err
	}
	id := p.appID
	if id == "" {
		info, aerr := p.heroku.App(ctx, app.Spec.AppName)
		if aerr != nil {
			return err
		}
		id = info.ID
	}
	// A claim for another app id, with a release made since, is stale:
	// the app of that name was deleted, and this release is on the one
	// that took the name.
	app.Status.AppClaim = &herokunixv1.AppClaim{AppID: id, ReleaseID: rel.ID, Version: rel.Version}
	return err
}

// reconcileCredentials reads the Heroku API key from the referenced Secret
// and picks the account's client. A missing Secret or key stalls until the
// Secret changes (Secrets are watched).
func (r *HerokuNixAppReconciler) reconcileCredentials(ctx context.Context, p *pass) error {
	key, version, err := r.apiKey(ctx, p.app)
	if err != nil {
		return err
	}
	p.secrets.Credentials = version
	hk, err := r.Heroku.For(p.app.UID, key, p.now)
	if err != nil {
		return fmt.Errorf("making Heroku client: %w", err)
	}
	p.apiKey, p.heroku = key, hk
	return nil
}

// apiKey returns the key and its Secret's resourceVersion.
func (r *HerokuNixAppReconciler) apiKey(ctx context.Context, app *herokunixv1.HerokuNixApp) (string, string, error) {
	ref := app.Spec.CredentialsSecretRef
	name := client.ObjectKey{Namespace: app.Namespace, Name: ref.Name}
	// The watch caches Secrets' metadata: while the Secret's version is
	// the one read last, the key is known without a read from the API
	// server (a retry storm must not become a Secret-read storm).
	var cached metav1.PartialObjectMetadata
	cached.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	if err := r.Get(ctx, name, &cached); err == nil {
		if key, ok := r.secretKeys.lookup(name, cached.ResourceVersion, ref.KeyOrDefault()); ok {
			return key, cached.ResourceVersion, nil
		}
	}
	var secret corev1.Secret
	err := r.APIReader.Get(ctx, name, &secret)
	if apierrors.IsNotFound(err) {
		r.secretKeys.forget(name)
		return "", "", stalled(herokunixv1.ReasonCredentialsNotFound, "Secret %s/%s not found", app.Namespace, ref.Name)
	}
	if se := readForbidden(err, "Secret", app.Namespace, ref.Name, "spec.credentialsSecretRef"); se != nil {
		return "", "", se
	}
	if err != nil {
		return "", "", fmt.Errorf("reading Secret %s: %w", ref.Name, err)
	}
	key := string(secret.Data[ref.KeyOrDefault()])
	if key == "" {
		return "", "", stalled(herokunixv1.ReasonCredentialsNotFound, "Secret %s/%s has no key %q", app.Namespace, ref.Name, ref.KeyOrDefault())
	}
	// Heroku would refuse such a key for ever (an `echo key | kubectl
	// create secret` mistake): say so rather than retry. The key is not
	// printed.
	if where := untrimmed(key); where != "" {
		return "", "", stalled(herokunixv1.ReasonCredentialsInvalid, "the key %q of Secret %s/%s %s; store the key without it (e.g. echo -n)",
			ref.KeyOrDefault(), app.Namespace, ref.Name, where)
	}
	r.secretKeys.remember(name, secret.ResourceVersion, ref.KeyOrDefault(), key)
	return key, secret.ResourceVersion, nil
}

// nixConfigVersion is the resourceVersion of the nix.conf Secret the
// build reads ("" when there is none, or it is missing), from the cache of
// Secrets' metadata: a change re-runs a failed build.
func (r *HerokuNixAppReconciler) nixConfigVersion(ctx context.Context, app *herokunixv1.HerokuNixApp) (string, error) {
	ref := app.Spec.Build.NixConfigSecretRef
	if ref == nil {
		return "", nil
	}
	var meta metav1.PartialObjectMetadata
	meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	err := r.Get(ctx, client.ObjectKey{Namespace: app.Namespace, Name: ref.Name}, &meta)
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading Secret %s: %w", ref.Name, err)
	}
	return meta.ResourceVersion, nil
}

// untrimmed says where a key has whitespace around it, or "".
func untrimmed(key string) string {
	switch {
	case strings.HasSuffix(key, "\n"):
		return "ends with a newline"
	case strings.TrimRightFunc(key, unicode.IsSpace) != key:
		return "ends with whitespace"
	case strings.TrimLeftFunc(key, unicode.IsSpace) != key:
		return "starts with whitespace"
	}
	return ""
}

// reconcileBuild makes sure the images for the spec exist. A build is
// never run twice: its name is a hash of its inputs and of the build it
// follows (so a reverted spec builds anew, never re-releasing an older
// result over what runs). A refresh of
// a moving ref (or a retry) runs in the background while the images already
// built from the spec stay deployed. Sets Built; records the build,
// revision and images on status.
func (r *HerokuNixAppReconciler) reconcileBuild(ctx context.Context, p *pass) error {
	app := p.app
	nixConf, err := r.nixConfigVersion(ctx, app)
	if err != nil {
		return err
	}
	p.secrets.NixConfig = nixConf
	want := build.DesiredForSecrets(app, p.now, p.forceRefresh, p.secrets)
	last := app.Status.Build
	if last != nil && last.Job == want.Name && last.CompletionTime != nil {
		if last.Message != "" {
			if c := findBuilt(app); c != nil && c.Reason == herokunixv1.ReasonUnauthorized {
				return r.pushUnauthorized(p, want, last.Message)
			}
			return r.buildFailed(p, want, last.Message)
		}
		return nil
	}

	// A build this pass follows rather than starts may have resolved the
	// flake before a reconcile request arrived (a push webhook announcing a
	// new commit): the request is not handled by it.
	following := last != nil && last.Job == want.Name
	if !want.Background && (last == nil || last.Job != want.Name) {
		// A foreground build is about to start: check the app first (one
		// read), so a Fir app, another stack, a missing app or a refused
		// key stops here, before the build's push reaches Heroku's
		// registry. A background refresh runs only once images of this
		// spec were released, so the app was checked already.
		info, err := p.heroku.App(ctx, app.Spec.AppName)
		if err != nil {
			return herokuError("reading Heroku app "+app.Spec.AppName+" before building", err)
		}
		p.appID = info.ID
	}
	state, err := r.Builder.Ensure(ctx, app, want, p.apiKey)
	var refused *build.PodRefusedError
	if errors.As(err, &refused) {
		setCondition(app, herokunixv1.ConditionBuilt, metav1.ConditionFalse, herokunixv1.ReasonBuildPodRefused, refused.Error())
		return &stepError{Reason: herokunixv1.ReasonBuildPodRefused, Err: err, Stalling: true}
	}
	if err != nil {
		return fmt.Errorf("ensuring build %s: %w", want.Name, err)
	}
	if err := r.Builder.CancelOthers(ctx, app, want.Name); err != nil {
		return err
	}
	if last == nil || last.Job != want.Name {
		succeeded, repush := "", false
		if last != nil {
			succeeded, repush = last.SucceededHash, last.Repush && last.Hash == want.SpecHash
		}
		app.Status.Build = &herokunixv1.BuildStatus{Hash: want.SpecHash, Job: want.Name, StartTime: &metav1.Time{Time: p.now}, SucceededHash: succeeded, Repush: repush,
			Inputs: want.Inputs}
		if want.Retry {
			app.Status.Build.TransientFailures = last.TransientFailures
		}
		if p.requestedAt != "" {
			// The request is consumed by the build it started, not left
			// pending to start another one each pass while Heroku is down.
			app.Status.LastHandledReconcileAt = p.requestedAt
		}
	}
	if following && p.requestedAt != "" {
		// Left pending; once the build ends, the pass that sees it ended
		// comes back soon to start the build that takes the request up.
		p.requestedAt, p.requestWaits = "", state.Phase != build.Running
	}
	if state.Started && want.Background {
		// A build in the foreground shows on Ready (BuildRunning); one in
		// the background does not.
		r.event(app, corev1.EventTypeNormal, "BuildStarted", "Build", "refreshing %s in the background (%s)", app.Spec.Flake, want.Name)
	}

	switch state.Phase {
	case build.Running:
		if want.Background {
			return nil // the deployed images keep serving meanwhile
		}
		setCondition(app, herokunixv1.ConditionBuilt, metav1.ConditionFalse, herokunixv1.ReasonBuildRunning, "building "+app.Spec.Flake)
		return &waiting{Reason: herokunixv1.ReasonBuildRunning, Message: "building " + app.Spec.Flake, After: r.Builder.PollInterval()}
	case build.Failed:
		app.Status.Build.CompletionTime = &metav1.Time{Time: p.now}
		app.Status.Build.Repush = false
		metrics.BuildFinished(metrics.ResultFailed, buildDuration(app.Status.Build))
		app.Status.Build.Message = truncate(state.Message, 2048)
		if state.Failure == artifact.FailureUnauthorized {
			return r.pushUnauthorized(p, want, state.Message)
		}
		if state.Transient != "" {
			app.Status.Build.Message = truncate(state.Transient+": "+state.Message, 2048)
			scheduleRetry(app.Status.Build, p.now, r.BuildRetryBase)
		}
		if want.Background {
			// Ready stays as it is; a failed first build is evented by
			// Ready's change to BuildFailed.
			r.event(app, corev1.EventTypeWarning, herokunixv1.ReasonBuildFailed, "Build", "background build %s failed; the deployed images keep running", want.Name)
		}
		return r.buildFailed(p, want, app.Status.Build.Message)
	}

	res := state.Result
	app.Status.Build.CompletionTime = &metav1.Time{Time: p.now}
	app.Status.Build.Repush = false
	metrics.BuildFinished(metrics.ResultSucceeded, buildDuration(app.Status.Build))
	app.Status.Build.Message = ""
	app.Status.Build.TransientFailures = 0
	app.Status.Build.SucceededHash = want.SpecHash
	if !res.Unchanged {
		app.Status.Revision = res.Revision
		app.Status.ShortRevision = shortRev(res.Revision)
		app.Status.LockedFlake = res.LockedFlake
		app.Status.Images = map[string]herokunixv1.ImageStatus{}
		for name, img := range res.Images {
			app.Status.Images[name] = herokunixv1.ImageStatus{ImageID: img.ImageID, Digest: img.Digest}
		}
		metrics.Pushed(res.PushedBytes, res.SkippedBlobs)
		r.event(app, corev1.EventTypeNormal, herokunixv1.ReasonBuildSucceeded, "Build", "built %s", res.LockedFlake)
	}
	setCondition(app, herokunixv1.ConditionBuilt, metav1.ConditionTrue, herokunixv1.ReasonBuildSucceeded, "built "+app.Status.LockedFlake)
	return nil
}

// buildFailed reports a failed build; the running Heroku release is left
// as it is. A build that failed for a reason that may pass (an evicted
// pod, its deadline, the network) is retried at status.build.retryTime
// (scheduleRetry), a bounded number of times. Any other failed first build
// of a spec stalls (it would fail the same way) until the spec or what the
// build runs with changes (resources, placement, its Secrets), a moving
// ref moves, or a reconcile request retries it. A failed background build
// only sets Built: the images built from the spec keep running and the
// pass goes on (no flapping of Ready between refreshes).
func (r *HerokuNixAppReconciler) buildFailed(p *pass, want build.Desired, msg string) error {
	setCondition(p.app, herokunixv1.ConditionBuilt, metav1.ConditionFalse, herokunixv1.ReasonBuildFailed, msg)
	b := p.app.Status.Build
	if b != nil && b.RetryTime != nil {
		// The wait is taken from status, so every pass until the retry
		// says the same and writes nothing.
		wait := max(b.RetryTime.Sub(p.now), time.Second)
		if want.Background {
			p.buildRetry = wait
			return nil
		}
		note := fmt.Sprintf("build %s failed for a reason that may pass (failure %d of at most %d); it is retried at %s; the running Heroku release is untouched: %s",
			want.Name, b.TransientFailures, maxBuildAttempts, b.RetryTime.UTC().Format(time.RFC3339), msg)
		return &stepError{Reason: herokunixv1.ReasonBuildFailed, Err: errors.New(note), RetryAfter: wait, Summary: note}
	}
	if want.Background {
		return nil
	}
	err := fmt.Errorf("build %s failed; the running Heroku release is untouched: %s", want.Name, msg)
	if b != nil && b.TransientFailures >= maxBuildAttempts {
		err = fmt.Errorf("build %s failed %d times in a row for reasons that may pass; no more retries until the spec, the build's resources, placement or Secrets change, or a reconcile request; the running Heroku release is untouched: %s",
			want.Name, b.TransientFailures, msg)
	}
	return &stepError{Reason: herokunixv1.ReasonBuildFailed, Err: err, Stalling: true}
}

// Retries of builds that failed for a reason that may pass: exponential
// from buildRetryBase to buildRetryCap, jittered by ±25% so builds evicted
// together do not come back together, at most maxBuildAttempts builds in a
// row.
const (
	buildRetryBase   = 30 * time.Second
	buildRetryCap    = 10 * time.Minute
	maxBuildAttempts = 6
)

// scheduleRetry counts a failed build that may pass and, unless that was
// the last attempt, sets when it is retried: after base (zero:
// buildRetryBase) doubled for each failure before.
func scheduleRetry(b *herokunixv1.BuildStatus, now time.Time, base time.Duration) {
	b.TransientFailures++
	b.RetryTime = nil
	if b.TransientFailures >= maxBuildAttempts {
		return
	}
	if base <= 0 {
		base = buildRetryBase
	}
	d := min(buildRetryCap, base<<(b.TransientFailures-1))
	d = d - d/4 + time.Duration(rand.Int64N(int64(d/2)+1))
	// Whole seconds, as status keeps them: what the pass holds is what a
	// later pass reads back.
	b.RetryTime = &metav1.Time{Time: now.Add(d).Truncate(time.Second)}
}

// pushUnauthorized reports a push the registry refused with 401: a
// credentials problem (a wrong key, or an app the key cannot reach), not a
// failed build. It stalls with Unauthorized (on Built too, which is how a
// later pass knows) until a reconcile request retries the build, as for a
// failed build.
func (r *HerokuNixAppReconciler) pushUnauthorized(p *pass, want build.Desired, msg string) error {
	setCondition(p.app, herokunixv1.ConditionBuilt, metav1.ConditionFalse, herokunixv1.ReasonUnauthorized, msg)
	return stalled(herokunixv1.ReasonUnauthorized,
		"Heroku's registry refused the API key while pushing build %s (401: a wrong key, or an app the key cannot reach); the running Heroku release is untouched: %s", want.Name, msg)
}

func findBuilt(app *herokunixv1.HerokuNixApp) *metav1.Condition {
	return meta.FindStatusCondition(app.Status.Conditions, herokunixv1.ConditionBuilt)
}

func buildDuration(b *herokunixv1.BuildStatus) time.Duration {
	if b.StartTime == nil || b.CompletionTime == nil {
		return 0
	}
	return b.CompletionTime.Sub(b.StartTime.Time)
}

func (r *HerokuNixAppReconciler) event(app *herokunixv1.HerokuNixApp, typ, reason, action, format string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(app, nil, typ, reason, action, format, args...)
	}
}
