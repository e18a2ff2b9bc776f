package controllers

import (
	"context"
	"errors"
	"fmt"
	"sort"
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

// reconcileConflict stalls this resource when an older one deploys to the
// same Heroku app: two writers of one app would undo each other's releases.
func (r *HerokuNixAppReconciler) reconcileConflict(ctx context.Context, p *pass) error {
	var same herokunixv1.HerokuNixAppList
	if err := r.List(ctx, &same, client.MatchingFields{indexAppName: p.app.Spec.AppName}); err != nil {
		return fmt.Errorf("listing resources for app %s: %w", p.app.Spec.AppName, err)
	}
	if owner := herokuAppOwner(same.Items, p.app.UID); owner != nil && owner.UID != p.app.UID {
		return stalled(herokunixv1.ReasonAppConflict, "Heroku app %s is already deployed by HerokuNixApp %s/%s; delete one of them",
			p.app.Spec.AppName, owner.Namespace, owner.Name)
	}
	return nil
}

// herokuAppOwner picks the resource that owns a Heroku app among those
// naming it: one that has released to it before one that has not (so a
// newcomer elsewhere, perhaps without working credentials, cannot take an
// app over), then the first created (ties by namespace/name), ignoring ones
// being deleted other than asking.
func herokuAppOwner(apps []herokunixv1.HerokuNixApp, asking types.UID) *herokunixv1.HerokuNixApp {
	live := make([]*herokunixv1.HerokuNixApp, 0, len(apps))
	for i := range apps {
		if apps[i].DeletionTimestamp == nil || apps[i].UID == asking {
			live = append(live, &apps[i])
		}
	}
	if len(live) == 0 {
		return nil
	}
	sort.Slice(live, func(i, j int) bool {
		a, b := live[i], live[j]
		if ar, br := a.Status.Release != nil, b.Status.Release != nil; ar != br {
			return ar
		}
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
	})
	return live[0]
}

// reconcileCredentials reads the Heroku API key from the referenced Secret
// and picks the account's client. A missing Secret or key stalls until the
// Secret changes (Secrets are watched).
func (r *HerokuNixAppReconciler) reconcileCredentials(ctx context.Context, p *pass) error {
	key, err := r.apiKey(ctx, p.app)
	if err != nil {
		return err
	}
	hk, err := r.Heroku.For(p.app.UID, key, p.now)
	if err != nil {
		return fmt.Errorf("making Heroku client: %w", err)
	}
	p.apiKey, p.heroku = key, hk
	return nil
}

func (r *HerokuNixAppReconciler) apiKey(ctx context.Context, app *herokunixv1.HerokuNixApp) (string, error) {
	ref := app.Spec.CredentialsSecretRef
	name := client.ObjectKey{Namespace: app.Namespace, Name: ref.Name}
	// The watch caches Secrets' metadata: while the Secret's version is
	// the one read last, the key is known without a read from the API
	// server (a retry storm must not become a Secret-read storm).
	var cached metav1.PartialObjectMetadata
	cached.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	if err := r.Get(ctx, name, &cached); err == nil {
		if key, ok := r.secretKeys.lookup(name, cached.ResourceVersion, ref.KeyOrDefault()); ok {
			return key, nil
		}
	}
	var secret corev1.Secret
	err := r.APIReader.Get(ctx, name, &secret)
	if apierrors.IsNotFound(err) {
		r.secretKeys.forget(name)
		return "", stalled(herokunixv1.ReasonCredentialsNotFound, "Secret %s/%s not found", app.Namespace, ref.Name)
	}
	if err != nil {
		return "", fmt.Errorf("reading Secret %s: %w", ref.Name, err)
	}
	key := string(secret.Data[ref.KeyOrDefault()])
	if key == "" {
		return "", stalled(herokunixv1.ReasonCredentialsNotFound, "Secret %s/%s has no key %q", app.Namespace, ref.Name, ref.KeyOrDefault())
	}
	// Heroku would refuse such a key for ever (an `echo key | kubectl
	// create secret` mistake): say so rather than retry. The key is not
	// printed.
	if where := untrimmed(key); where != "" {
		return "", stalled(herokunixv1.ReasonCredentialsInvalid, "the key %q of Secret %s/%s %s; store the key without it (e.g. echo -n)",
			ref.KeyOrDefault(), app.Namespace, ref.Name, where)
	}
	r.secretKeys.remember(name, secret.ResourceVersion, ref.KeyOrDefault(), key)
	return key, nil
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
	want := build.DesiredFor(app, p.now, p.forceRefresh)
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
		if _, err := p.heroku.App(ctx, app.Spec.AppName); err != nil {
			return herokuError("reading Heroku app "+app.Spec.AppName+" before building", err)
		}
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
		app.Status.Build = &herokunixv1.BuildStatus{Hash: want.SpecHash, Job: want.Name, StartTime: &metav1.Time{Time: p.now}, SucceededHash: succeeded, Repush: repush}
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
		if want.Background {
			// Ready stays as it is; a failed first build is evented by
			// Ready's change to BuildFailed.
			r.event(app, corev1.EventTypeWarning, herokunixv1.ReasonBuildFailed, "Build", "background build %s failed; the deployed images keep running", want.Name)
		}
		return r.buildFailed(p, want, state.Message)
	}

	res := state.Result
	app.Status.Build.CompletionTime = &metav1.Time{Time: p.now}
	app.Status.Build.Repush = false
	metrics.BuildFinished(metrics.ResultSucceeded, buildDuration(app.Status.Build))
	app.Status.Build.Message = ""
	app.Status.Build.SucceededHash = want.SpecHash
	if !res.Unchanged {
		app.Status.Revision = res.Revision
		app.Status.ShortRevision = res.Revision[:min(12, len(res.Revision))]
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
// as it is. A failed first build of a spec stalls (it would fail the same
// way) until the spec changes, a moving ref moves, or a reconcile request
// retries it. A failed background build only sets Built: the images built
// from the spec keep running and the pass goes on (no flapping of Ready
// between refreshes).
func (r *HerokuNixAppReconciler) buildFailed(p *pass, want build.Desired, msg string) error {
	setCondition(p.app, herokunixv1.ConditionBuilt, metav1.ConditionFalse, herokunixv1.ReasonBuildFailed, msg)
	if want.Background {
		return nil
	}
	err := fmt.Errorf("build %s failed; the running Heroku release is untouched: %s", want.Name, msg)
	return &stepError{Reason: herokunixv1.ReasonBuildFailed, Err: err, Stalling: true}
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
