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
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/build"
	"github.com/herokunix/herokunix/internal/heroku"
	"github.com/herokunix/herokunix/internal/metrics"
)

const defaultReleasePoll = 10 * time.Second

// Exactly one release per desired revision, without parsing descriptions.
//
// Releases carry no image IDs, and how Heroku describes a release of
// several types is not documented, so herokunix never decides from a
// description whether a release is its own. It relies on two facts
// instead (heroku.md "Releasing"): a release newer than the latest one
// seen before the request may be the request's, and Heroku's per-type
// ignore makes no release when every type already runs the requested image.
//
//  1. Before the formation PATCH, the pass reads the latest release and
//     records status.releaseIntent {images, after: its version} with a
//     status patch of its own. A pending release found then (someone
//     else's, or one left from older images) is waited for instead.
//  2. It PATCHes and reads the latest release again: a newer one is the
//     release it made; the same one means Heroku made none, because every
//     type already runs these images, and the current release is adopted.
//     Either way the intent is cleared with the pass's status patch.
//  3. A pass that finds an intent for the images it wants (the answer was
//     lost, or the controller stopped between the PATCH and the status
//     patch) reads the releases after intent.after (one read, every page).
//     One of them pending: wait for it (one read per look, no PATCH). The
//     first of them failed: it is taken as this resource's (it followed the
//     intent at once) and stalls as a failed release phase would, so a
//     failing release command is not run again. Otherwise the PATCH is
//     sent again: types already running the images are skipped, so a
//     release that succeeded is adopted and nothing is released twice.
//
// This holds whatever the descriptions say: all types, only the changed
// ones, or another join (the stand-in's Options.Describe replays them).

// reconcileRelease makes Heroku run the built images. It releases only
// when the release this resource made does not carry them, follows a
// pending release (release phase) by requeueing, and on a resync spends
// exactly one Heroku read: the releases after its own, to detect drift.
// Sets Released; records the release and the web URL on status.
func (r *HerokuNixAppReconciler) reconcileRelease(ctx context.Context, p *pass) (err error) {
	// However the step ends, a release made is this resource's proof.
	defer func() { err = r.claimApp(ctx, p, err) }()
	app := p.app
	want := builtImageIDs(app)
	if in := app.Status.ReleaseIntent; in != nil && maps.Equal(in.Images, want) {
		return r.resumeRelease(ctx, p, want)
	}
	rel := app.Status.Release
	if rel == nil || !maps.Equal(rel.Images, want) {
		return r.release(ctx, p, want)
	}
	switch rel.Status {
	case heroku.ReleasePending:
		return r.followRelease(ctx, p)
	case heroku.ReleaseFailed:
		return releasePhaseFailed(app)
	case heroku.ReleaseExpired:
		// Recorded by checkDrift when a correction was due; the images
		// were pushed again since (Build.Repush): release them.
		if app.Status.Build == nil || !app.Status.Build.Repush {
			return r.release(ctx, p, want)
		}
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

// release checks the app (it must be a Cedar app on the container stack),
// removes the types herokunix released that left the spec, and releases
// every process type's image in one docker-releases formation update,
// guarded by a release intent (see above).
func (r *HerokuNixAppReconciler) release(ctx context.Context, p *pass, images map[string]string) error {
	app := p.app
	// The latest release first: while one is pending, each look is this
	// one read (no app read, no write).
	latest, err := p.heroku.CurrentRelease(ctx, app.Spec.AppName)
	if err != nil {
		return r.releaseError(app, herokuError("reading the latest release", err))
	}
	if latest != nil && latest.Status == heroku.ReleasePending {
		return r.waitForPending(p, latest)
	}
	info, err := p.heroku.App(ctx, app.Spec.AppName)
	if err != nil {
		return r.releaseError(app, herokuError("reading Heroku app "+app.Spec.AppName, err))
	}
	app.Status.WebURL, p.appID = info.WebURL, info.ID
	if err := r.removeLeftTypes(ctx, p, images); err != nil {
		return err
	}
	after := 0
	if latest != nil {
		after = latest.Version
	}
	if err := r.recordIntent(ctx, p, &herokunixv1.ReleaseIntent{Images: images, After: after}); err != nil {
		return err
	}
	return r.sendImages(ctx, p, images, after)
}

// resumeRelease goes on with a release whose intent is on status but whose
// outcome was not seen (step 3 above).
func (r *HerokuNixAppReconciler) resumeRelease(ctx context.Context, p *pass, images map[string]string) error {
	app := p.app
	in := app.Status.ReleaseIntent
	rels, err := p.heroku.ReleasesAfter(ctx, app.Spec.AppName, in.After)
	if err != nil {
		return r.releaseError(app, herokuError(fmt.Sprintf("reading the releases after %s", releaseName(in.After)), err))
	}
	for _, rel := range rels {
		if rel.Status == heroku.ReleasePending {
			return r.waitForPending(p, rel)
		}
	}
	if len(rels) > 0 && rels[0].Status == heroku.ReleaseFailed {
		// [U] The first release after the intent is taken as this
		// resource's: it was recorded just before the PATCH.
		app.Status.ReleaseIntent = nil
		app.Status.Release = releaseStatusOf(rels[0], images)
		return r.releaseStatus(ctx, p, true, rels[0].OutputStreamURL)
	}
	latest := in.After
	if len(rels) > 0 {
		latest = rels[len(rels)-1].Version
	}
	return r.sendImages(ctx, p, images, latest)
}

// sendImages PATCHes the images and reads the latest release: newer than
// latestBefore, it is the release made; else Heroku made none (every type
// runs these images already) and the current release is adopted.
func (r *HerokuNixAppReconciler) sendImages(ctx context.Context, p *pass, images map[string]string, latestBefore int) error {
	app := p.app
	if err := p.heroku.SendImages(ctx, app.Spec.AppName, images); err != nil {
		return r.releaseError(app, herokuError("releasing images", err))
	}
	rel, err := p.heroku.CurrentRelease(ctx, app.Spec.AppName)
	if err != nil {
		return r.releaseError(app, herokuError("reading the release made", err))
	}
	if rel != nil && rel.Version > latestBefore {
		app.Status.ReleaseIntent = nil
		app.Status.Release = releaseStatusOf(rel, images)
		recordDriftCheck(p)
		r.event(app, corev1.EventTypeNormal, "ReleaseCreated", "Release", "released %s of %s (%s)", releaseName(rel.Version), app.Spec.AppName, app.Status.ShortRevision)
		return r.releaseStatus(ctx, p, true, rel.OutputStreamURL)
	}
	if rel != nil && !rel.Current {
		// The latest release did not run (someone else's failed one): the
		// current release is older.
		if rel, err = r.runningRelease(ctx, p, rel.Version); err != nil {
			return err
		}
	}
	if rel == nil {
		return r.releaseError(app, &stepError{Reason: herokunixv1.ReasonReleaseFailed,
			Err: fmt.Errorf("the images were accepted, but Heroku lists no current release"), RetryAfter: time.Minute})
	}
	// Heroku ignored every type: its current release runs these images,
	// whatever its status says (an expired or null status is not success,
	// but the ignore is proof enough that the images run).
	app.Status.ReleaseIntent = nil
	app.Status.Release = releaseStatusOf(rel, images)
	recordDriftCheck(p)
	if rel.Status != heroku.ReleaseSucceeded && rel.Status != heroku.ReleasePending && rel.Status != heroku.ReleaseFailed {
		setCondition(app, herokunixv1.ConditionReleased, metav1.ConditionTrue, herokunixv1.ReasonReleased,
			fmt.Sprintf("Heroku runs these images in its current release %s (status %q)", releaseName(rel.Version), rel.Status))
		return nil
	}
	return r.releaseStatus(ctx, p, false, rel.OutputStreamURL)
}

// recordDriftCheck records that the pass knows what Heroku runs as of
// now: it read the releases after its own, or made or adopted the latest.
// The next look for drift is due an interval later.
func recordDriftCheck(p *pass) {
	p.app.Status.LastDriftCheck = &herokunixv1.DriftCheck{Time: metav1.NewTime(p.now), Generation: p.app.Generation}
}

// runningRelease finds the current release among the ones before
// latest (one read of up to a page of them).
func (r *HerokuNixAppReconciler) runningRelease(ctx context.Context, p *pass, latest int) (*heroku.Release, error) {
	rels, err := p.heroku.ReleasesAfter(ctx, p.app.Spec.AppName, max(0, latest-runningWindow))
	if err != nil {
		return nil, r.releaseError(p.app, herokuError("reading the current release", err))
	}
	for _, rel := range slices.Backward(rels) {
		if rel.Current {
			return rel, nil
		}
	}
	return nil, nil
}

// runningWindow is how far back runningRelease looks for the current release.
const runningWindow = 100

func releaseStatusOf(rel *heroku.Release, images map[string]string) *herokunixv1.ReleaseStatus {
	return &herokunixv1.ReleaseStatus{ID: rel.ID, Version: rel.Version, Name: releaseName(rel.Version), Status: rel.Status, Images: images}
}

// recordIntent writes the release intent to status at once, with a status
// patch of its own: it must be on the server before the PATCH it guards.
// The pass's final patch is computed from the state this leaves.
func (r *HerokuNixAppReconciler) recordIntent(ctx context.Context, p *pass, in *herokunixv1.ReleaseIntent) error {
	// The patch carries the intent alone (the rest of this pass's status
	// goes with the final patch); it is sent from a copy, as the server's
	// answer would overwrite what the pass holds.
	base := p.app.DeepCopy()
	withIntent := base.DeepCopy()
	withIntent.Status.ReleaseIntent = in.DeepCopy()
	if err := r.Status().Patch(ctx, withIntent, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("recording the release intent: %w", err)
	}
	p.app.Status.ReleaseIntent = in
	if p.before != nil {
		p.before.Status.ReleaseIntent = in.DeepCopy()
	}
	return nil
}

// waitForPending waits for a pending release this pass cannot tell is its
// own: one read per look, no PATCH and no app read, looking less often the
// longer it has run (a release phase may take an hour).
func (r *HerokuNixAppReconciler) waitForPending(p *pass, rel *heroku.Release) error {
	msg := fmt.Sprintf("waiting for %s to finish its release phase", releaseName(rel.Version))
	setCondition(p.app, herokunixv1.ConditionReleased, metav1.ConditionFalse, herokunixv1.ReasonReleasePending, msg)
	return &waiting{Reason: herokunixv1.ReasonReleasePending, Message: msg, After: pendingPoll(r.releasePoll(), p.now, rel.CreatedAt)}
}

// maxPendingPoll bounds the growing interval of pendingPoll.
const maxPendingPoll = 5 * time.Minute

// pendingPoll is how soon to look again at a release pending since
// created: a quarter of its age, at least base, at most maxPendingPoll.
func pendingPoll(base time.Duration, now, created time.Time) time.Duration {
	d := now.Sub(created) / 4
	return min(max(d, base), max(base, maxPendingPoll))
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
	return r.releaseStatus(ctx, p, changed, rel.OutputStreamURL)
}

// releaseStatus turns the release's status into conditions. fresh says
// the release was made, or changed status, in this pass (for metrics, and
// to read a failed release phase's output once, from streamURL).
// Only "succeeded" is success: "expired" (artifacts destroyed) and a null
// status say nothing about whether the images ran.
func (r *HerokuNixAppReconciler) releaseStatus(ctx context.Context, p *pass, fresh bool, streamURL string) error {
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
			rel.OutputTail = r.readOutputTail(ctx, p, streamURL)
		}
		return releasePhaseFailed(app)
	case heroku.ReleaseSucceeded:
	default:
		// expired or null: this release can no longer be followed; forget
		// it, so the next pass releases the images again (a release of
		// what already runs is ignored by Heroku and the current release
		// adopted).
		msg := fmt.Sprintf("release %s is %q, not succeeded; releasing the images again", rel.Name, rel.Status)
		app.Status.Release = nil
		setCondition(app, herokunixv1.ConditionReleased, metav1.ConditionFalse, herokunixv1.ReasonProgressing, msg)
		return &waiting{Reason: herokunixv1.ReasonProgressing, Message: msg, After: r.releasePoll()}
	}
	if fresh {
		metrics.ReleaseFinished(metrics.ResultSucceeded)
	}
	setCondition(app, herokunixv1.ConditionReleased, metav1.ConditionTrue, herokunixv1.ReasonReleased,
		fmt.Sprintf("release %s of %s succeeded", rel.Name, app.Spec.AppName))
	return nil
}

// releasePhaseFailed stalls: Heroku keeps the previous release running, and
// releasing the same images again would fail the same way. The message
// ends with the end of the release command's output, when Heroku streamed
// it.
func releasePhaseFailed(app *herokunixv1.HerokuNixApp) error {
	rel := app.Status.Release
	msg := fmt.Sprintf("release %s failed its release phase; Heroku keeps running the previous release", rel.Name)
	if rel.OutputTail != "" {
		msg += ". Its output ends:\n" + rel.OutputTail
	} else {
		msg += fmt.Sprintf(" (Heroku streamed no output for it: the release image needs curl for that; see `heroku logs --app %s --dyno release`)", app.Spec.AppName)
	}
	setCondition(app, herokunixv1.ConditionReleased, metav1.ConditionFalse, herokunixv1.ReasonReleasePhaseFailed, msg)
	return stalled(herokunixv1.ReasonReleasePhaseFailed, "%s", msg)
}

// releaseError records a failed Heroku call on Released and passes it on.
func (r *HerokuNixAppReconciler) releaseError(app *herokunixv1.HerokuNixApp, err *stepError) error {
	setCondition(app, herokunixv1.ConditionReleased, metav1.ConditionFalse, err.Reason, err.conditionMessage())
	return err
}

// removeLeftTypes removes from the app the process types the release this
// resource made carried and the images to release do not, with the
// docker-releases `{"docker_image": null}` PATCH of `heroku container:rm`:
// a type left out of a release keeps its old image otherwise. For
// "release" that matters most: Heroku would go on running the old release
// command before every later release. Any other type's formation entry
// goes, and its dynos stop. It runs before the PATCH, so the new release
// does not run a removed release command. A type Heroku no longer has is
// fine.
func (r *HerokuNixAppReconciler) removeLeftTypes(ctx context.Context, p *pass, images map[string]string) error {
	app := p.app
	if app.Status.Release == nil {
		return nil
	}
	for _, typ := range slices.Sorted(maps.Keys(app.Status.Release.Images)) {
		if _, ok := images[typ]; ok {
			continue
		}
		err := p.heroku.RemoveProcessType(ctx, app.Spec.AppName, typ)
		if heroku.IsNotFound(err, "app") {
			return r.releaseError(app, herokuError("removing process type "+typ, err))
		}
		if err != nil && !errors.Is(err, heroku.ErrNotFound) {
			return r.releaseError(app, herokuError("removing process type "+typ, err))
		}
		delete(app.Status.Release.Images, typ)
		if err == nil {
			r.event(app, corev1.EventTypeNormal, "ProcessTypeRemoved", "Release",
				"removed process type %s from %s: it left spec.processes%s", typ, app.Spec.AppName, removalNote(typ))
		}
	}
	return nil
}

func removalNote(typ string) string {
	if typ == "release" {
		return "; later releases run no release phase"
	}
	return "; its dynos stop"
}

// checkDrift looks for drift at most once an interval, whatever woke the
// pass (a build Job ending, a Secret, a resync): a look is due once
// spec.interval has passed since the last, when the spec changed since,
// or on a reconcile request this pass handles. Until then the last look's
// verdict stands without a Heroku read. A look is one read: the releases
// from this resource's own on (its status too: it may have expired). One
// that settled (nothing to wait for or to retry) is recorded on status, so
// it holds across restarts; one that found a release to wait for or a
// correction that failed is forgotten, so the next pass looks again. A
// read that failed taught nothing: the last look's verdict stands (a look
// due by time stays due), and the pass is retried with back-off.
func (r *HerokuNixAppReconciler) checkDrift(ctx context.Context, p *pass, want map[string]string) error {
	app := p.app
	if !driftCheckDue(app, p.now, p.requestedAt != "") {
		return lastDriftVerdict(app)
	}
	ours := app.Status.Release
	newer, err := p.heroku.ReleasesAfter(ctx, app.Spec.AppName, ours.Version-1)
	if err != nil {
		return r.releaseError(app, herokuError("reading the releases after "+ours.Name, err))
	}
	err = r.settleDrift(ctx, p, want, newer)
	if err == nil || isDriftStall(err) {
		recordDriftCheck(p)
	} else {
		app.Status.LastDriftCheck = nil
	}
	return err
}

// driftCheckDue says whether a pass at now reads Heroku's releases to
// look for drift: never looked, the interval passed since the last look,
// the spec changed since, or a reconcile was requested.
func driftCheckDue(app *herokunixv1.HerokuNixApp, now time.Time, requested bool) bool {
	last := app.Status.LastDriftCheck
	return requested || last == nil || last.Generation != app.Generation ||
		!now.Before(last.Time.Add(app.Spec.IntervalDuration())) || now.Before(last.Time.Time)
}

// lastDriftVerdict is how the last look for drift ended, for a pass that
// does not look again: observed drift stays stalled (only a person settles
// it); anything else let the pass go on.
func lastDriftVerdict(app *herokunixv1.HerokuNixApp) error {
	if c := meta.FindStatusCondition(app.Status.Conditions, herokunixv1.ConditionStalled); c != nil &&
		c.Status == metav1.ConditionTrue && c.Reason == herokunixv1.ReasonDriftDetected {
		return stalled(herokunixv1.ReasonDriftDetected, "%s", c.Message)
	}
	return nil
}

func isDriftStall(err error) bool {
	var se *stepError
	return errors.As(err, &se) && se.Stalling && se.Reason == herokunixv1.ReasonDriftDetected
}

// settleDrift acts on the releases from the one this resource made on
// (however many there are, read at once). A pending one (someone's deploy or a
// config var change in its release phase) is waited for, never released
// over. One that failed leaves the current release running. With
// driftPolicy Correct, when a newer release runs, the built images are
// released again: Heroku ignores that when it runs them already (a config
// var or add-on release), and its current release is adopted. With
// Observe, a newer image release that ran is reported (by Heroku's
// description: anything but a config var or add-on change); config
// releases are adopted.
func (r *HerokuNixAppReconciler) settleDrift(ctx context.Context, p *pass, want map[string]string, newer []*heroku.Release) error {
	app := p.app
	ours := app.Status.Release
	oursExpired := false
	if len(newer) > 0 && newer[0].Version == ours.Version {
		oursExpired = newer[0].Status == heroku.ReleaseExpired
		newer = newer[1:]
	}
	if len(newer) == 0 {
		return nil
	}
	for _, rel := range newer {
		if rel.Status == heroku.ReleasePending {
			return r.waitForPending(p, rel)
		}
	}
	// Managed config vars changed by someone else: Observe stalls here,
	// before a config release is adopted below (which would hide it from
	// the next resync); Correct has the config step set them again.
	var configWait error
	if names, by := configDrift(newer, app.Status.Config); len(names) > 0 {
		if configWait = r.configDrifted(app, names, by); app.Spec.DriftPolicy == herokunixv1.DriftPolicyObserve {
			return configWait
		}
	}
	var running *heroku.Release
	for _, rel := range slices.Backward(newer) {
		if rel.Current {
			running = rel
			break
		}
	}
	if running == nil {
		// Every newer release failed (or expired unrun): Heroku still runs
		// this resource's release.
		return configWait
	}
	if app.Spec.DriftPolicy != herokunixv1.DriftPolicyObserve {
		if oursExpired && app.Status.Build != nil {
			// Heroku destroyed the artifacts of this resource's release:
			// its images may be gone from the registry. Push them again
			// (a build of the same spec) before releasing them.
			ours.Status = heroku.ReleaseExpired
			app.Status.Build.Repush = true
			msg := fmt.Sprintf("Heroku runs %s, not the built images, and %s expired: pushing its images again before releasing them", releaseName(running.Version), ours.Name)
			setCondition(app, herokunixv1.ConditionReleased, metav1.ConditionFalse, herokunixv1.ReasonProgressing, msg)
			return &waiting{Reason: herokunixv1.ReasonProgressing, Message: msg, After: time.Second}
		}
		err := r.release(ctx, p, want)
		var w *waiting
		if err != nil && !errors.As(err, &w) {
			return err
		}
		// A re-release made, even one still in its release phase, corrects
		// the drift: that earns its event.
		if app.Status.Release != nil && app.Status.Release.Version > running.Version {
			r.event(app, corev1.EventTypeWarning, herokunixv1.ReasonDriftDetected, "Correct",
				"Heroku ran %s (%q), not the built images; released them again as %s", releaseName(running.Version), running.Description, app.Status.Release.Name)
		}
		if err != nil {
			return err
		}
		return configWait
	}
	for _, rel := range slices.Backward(newer) {
		if rel.Status == heroku.ReleaseSucceeded && mayChangeImages(rel.Description) {
			// Only a person can settle observed drift: it stalls, and
			// Ready's transition to DriftDetected records the (one) event.
			return stalled(herokunixv1.ReasonDriftDetected, "Heroku ran %s (%q) after %s, which this resource made",
				releaseName(rel.Version), rel.Description, ours.Name)
		}
	}
	app.Status.Release = releaseStatusOf(running, want)
	return nil
}

// mayChangeImages says whether a release, by Heroku's description of it,
// may run other images. Config var and add-on releases do not; anything
// else (deploys, rollbacks, promotions, what Heroku may add) is taken to.
// Only driftPolicy Observe reads descriptions (it must not release to find
// out); nothing that decides whether to release does.
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
