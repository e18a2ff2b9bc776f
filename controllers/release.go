package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/build"
	"github.com/herokunix/herokunix/internal/heroku"
	"github.com/herokunix/herokunix/internal/metrics"
)

const defaultReleasePoll = 10 * time.Second

// reconcileRelease makes Heroku run the built images. It releases only
// when the release this resource made does not carry them, follows a
// pending release (release phase) by requeueing, and on a resync spends
// exactly one Heroku read: the current release, to detect drift. Sets
// Released; records the release and the web URL on status.
func (r *HerokuNixAppReconciler) reconcileRelease(ctx context.Context, p *pass) error {
	app := p.app
	want := builtImageIDs(app)
	rel := app.Status.Release
	if rel == nil || !maps.Equal(rel.Images, want) {
		return r.release(ctx, p, want)
	}
	switch rel.Status {
	case heroku.ReleasePending:
		return r.followRelease(ctx, p)
	case heroku.ReleaseFailed:
		return releasePhaseFailed(app)
	}
	return r.checkDrift(ctx, p, want)
}

// builtImageIDs are the image IDs (config digests) Heroku should run.
func builtImageIDs(app *herokunixv1.HerokuNixApp) map[string]string {
	ids := make(map[string]string, len(app.Status.Images))
	for name, img := range app.Status.Images {
		ids[name] = img.ImageID
	}
	return ids
}

// release checks the app (it must use the container stack) and releases
// every process type's image in one docker-releases formation update.
func (r *HerokuNixAppReconciler) release(ctx context.Context, p *pass, images map[string]string) error {
	app := p.app
	info, err := p.heroku.App(ctx, app.Spec.AppName)
	if err != nil {
		return r.releaseError(app, herokuError("reading Heroku app "+app.Spec.AppName, err))
	}
	app.Status.WebURL = info.WebURL

	rel, outcome, err := p.heroku.ReleaseImages(ctx, app.Spec.AppName, images)
	if err != nil {
		return r.releaseError(app, herokuError("releasing images", err))
	}
	if rel == nil {
		return r.releaseError(app, &stepError{Reason: herokunixv1.ReasonReleaseFailed,
			Err: fmt.Errorf("the images were accepted, but Heroku lists no release"), RetryAfter: time.Minute})
	}
	// AlreadyDeployed: the latest release is this deploy already (a
	// repeated call after a lost answer or from stale state): adopt it.
	released := outcome == heroku.Released
	if outcome == heroku.NotReleased {
		switch {
		case rel.Current && rel.Status == heroku.ReleaseSucceeded:
			// Heroku ignores a release of the images its current release
			// runs: that release runs them, adopt it.
		case rel.Status == heroku.ReleasePending:
			msg := fmt.Sprintf("waiting for %s, released by someone else, to finish its release phase", releaseName(rel.Version))
			setCondition(app, herokunixv1.ConditionReleased, metav1.ConditionFalse, herokunixv1.ReasonReleasePending, msg)
			return &waiting{Reason: herokunixv1.ReasonReleasePending, Message: msg, After: r.releasePoll()}
		default:
			return r.releaseError(app, &stepError{Reason: herokunixv1.ReasonReleaseFailed, RetryAfter: jitter(app.Spec.IntervalDuration()),
				Err: fmt.Errorf("no release of the built images was made, and the latest release, %s, is %s and not herokunix's", releaseName(rel.Version), rel.Status)})
		}
	}
	app.Status.Release = &herokunixv1.ReleaseStatus{ID: rel.ID, Version: rel.Version, Name: releaseName(rel.Version), Status: rel.Status, Images: images}
	if released {
		r.event(app, corev1.EventTypeNormal, "ReleaseCreated", "Release", "released %s of %s (%s)", releaseName(rel.Version), app.Spec.AppName, app.Status.ShortRevision)
	}
	return r.releaseStatus(p, released)
}

// followRelease looks at a pending release once.
func (r *HerokuNixAppReconciler) followRelease(ctx context.Context, p *pass) error {
	app := p.app
	rel, err := p.heroku.Release(ctx, app.Spec.AppName, app.Status.Release.ID)
	if err != nil {
		return r.releaseError(app, herokuError("reading release "+app.Status.Release.Name, err))
	}
	changed := app.Status.Release.Status != rel.Status
	app.Status.Release.Status = rel.Status
	return r.releaseStatus(p, changed)
}

// releaseStatus turns the release's status into conditions. fresh says
// the release was made, or changed status, in this pass (for metrics).
func (r *HerokuNixAppReconciler) releaseStatus(p *pass, fresh bool) error {
	app := p.app
	rel := app.Status.Release
	switch rel.Status {
	case heroku.ReleasePending:
		msg := fmt.Sprintf("release %s is running its release phase", rel.Name)
		setCondition(app, herokunixv1.ConditionReleased, metav1.ConditionFalse, herokunixv1.ReasonReleasePending, msg)
		return &waiting{Reason: herokunixv1.ReasonReleasePending, Message: msg, After: r.releasePoll()}
	case heroku.ReleaseFailed:
		if fresh {
			metrics.ReleaseFinished(metrics.ResultFailed)
		}
		return releasePhaseFailed(app)
	}
	if fresh {
		metrics.ReleaseFinished(metrics.ResultSucceeded)
	}
	setCondition(app, herokunixv1.ConditionReleased, metav1.ConditionTrue, herokunixv1.ReasonReleased,
		fmt.Sprintf("release %s of %s succeeded", rel.Name, app.Spec.AppName))
	return nil
}

// releasePhaseFailed stalls: Heroku keeps the previous release running, and
// releasing the same images again would fail the same way.
func releasePhaseFailed(app *herokunixv1.HerokuNixApp) error {
	msg := fmt.Sprintf("release %s failed its release phase; Heroku keeps running the previous release", app.Status.Release.Name)
	setCondition(app, herokunixv1.ConditionReleased, metav1.ConditionFalse, herokunixv1.ReasonReleasePhaseFailed, msg)
	return stalled(herokunixv1.ReasonReleasePhaseFailed, "%s", msg)
}

// releaseError records a failed Heroku call on Released and passes it on.
func (r *HerokuNixAppReconciler) releaseError(app *herokunixv1.HerokuNixApp, err *stepError) error {
	setCondition(app, herokunixv1.ConditionReleased, metav1.ConditionFalse, err.Reason, err.Error())
	return err
}

// driftWindow is how many releases after its own a resync looks at.
const driftWindow = 50

// checkDrift looks at the releases made after the one this resource made
// (one read). Some may carry other images (someone deployed or rolled
// back), others only a config change. With driftPolicy Correct the built
// images are released again: Heroku ignores that when it runs them
// already, and its current release is adopted. With Observe, a newer image
// release that ran is reported (by Heroku's description: anything but a
// config var or add-on change); config releases are adopted.
func (r *HerokuNixAppReconciler) checkDrift(ctx context.Context, p *pass, want map[string]string) error {
	app := p.app
	ours := app.Status.Release
	rels, err := p.heroku.ReleasesSince(ctx, app.Spec.AppName, ours.Version, driftWindow)
	if err != nil {
		return r.releaseError(app, herokuError("reading the releases since "+ours.Name, err))
	}
	newer := slices.DeleteFunc(rels, func(rel *heroku.Release) bool { return rel.Version <= ours.Version })
	if len(newer) == 0 {
		return nil
	}
	latest := newer[len(newer)-1]
	if app.Spec.DriftPolicy != herokunixv1.DriftPolicyObserve {
		err := r.release(ctx, p, want)
		var w *waiting
		if err != nil && !errors.As(err, &w) {
			return err
		}
		// A re-release made, even one still in its release phase, corrects
		// the drift: that earns its event.
		if app.Status.Release.Version > latest.Version {
			r.event(app, corev1.EventTypeWarning, herokunixv1.ReasonDriftDetected, "Correct",
				"Heroku ran %s (%q), not the built images; released them again as %s", releaseName(latest.Version), latest.Description, app.Status.Release.Name)
		}
		return err
	}
	for _, rel := range slices.Backward(newer) {
		if rel.Status == heroku.ReleaseSucceeded && mayChangeImages(rel.Description) {
			// Only a person can settle observed drift: it stalls, and
			// Ready's transition to DriftDetected records the (one) event.
			return stalled(herokunixv1.ReasonDriftDetected, "Heroku ran %s (%q) after %s, which this resource made",
				releaseName(rel.Version), rel.Description, ours.Name)
		}
	}
	for _, rel := range slices.Backward(newer) {
		if rel.Current {
			app.Status.Release = &herokunixv1.ReleaseStatus{ID: rel.ID, Version: rel.Version, Name: releaseName(rel.Version), Status: rel.Status, Images: want}
			break
		}
	}
	return nil
}

// mayChangeImages says whether a release, by Heroku's description of it,
// may run other images. Config var and add-on releases do not; anything
// else (deploys, rollbacks, promotions, what Heroku may add) is taken to.
func mayChangeImages(description string) bool {
	for _, config := range []string{"Set ", "Remove ", "Attach ", "Detach ", "Update "} {
		if strings.HasPrefix(description, config) {
			return false
		}
	}
	return true
}

func releaseName(version int) string { return fmt.Sprintf("v%d", version) }

func (r *HerokuNixAppReconciler) releasePoll() time.Duration {
	if r.ReleasePollInterval > 0 {
		return r.ReleasePollInterval
	}
	return defaultReleasePoll
}

// desiredFormation is the quantity and size the spec sets per process type
// (the release phase is not a formation).
func desiredFormation(app *herokunixv1.HerokuNixApp) []heroku.Formation {
	var out []heroku.Formation
	for _, name := range slices.Sorted(maps.Keys(app.Spec.Processes)) {
		proc := app.Spec.Processes[name]
		if name == "release" || (proc.Quantity == nil && proc.Size == "") {
			continue
		}
		f := heroku.Formation{Type: name, Quantity: -1, Size: proc.Size}
		if proc.Quantity != nil {
			f.Quantity = int(*proc.Quantity)
		}
		out = append(out, f)
	}
	return out
}

// reconcileFormation applies quantities and sizes after a successful
// release, only when they differ from what was last applied.
func (r *HerokuNixAppReconciler) reconcileFormation(ctx context.Context, p *pass) error {
	app := p.app
	want := desiredFormation(app)
	fp := build.Fingerprint(want)
	if fp == app.Status.AppliedFormation {
		return nil
	}
	if len(want) > 0 {
		if err := p.heroku.ScaleFormation(ctx, app.Spec.AppName, want); err != nil {
			return herokuError("scaling formation", err)
		}
		r.event(app, corev1.EventTypeNormal, "Scaled", "Scale", "formation of %s set to %s", app.Spec.AppName, formationSummary(want))
	}
	app.Status.AppliedFormation = fp
	return nil
}

func formationSummary(fs []heroku.Formation) string {
	s := ""
	for i, f := range fs {
		if i > 0 {
			s += ", "
		}
		s += f.Type + "="
		if f.Quantity >= 0 {
			s += fmt.Sprint(f.Quantity)
		}
		if f.Size != "" {
			s += ":" + f.Size
		}
	}
	return s
}
