package controllers

import (
	"context"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/artifact"
	"github.com/herokunix/herokunix/internal/build"
	"github.com/herokunix/herokunix/internal/heroku"
)

// TestARefreshBuildSpendsOneHerokuReadAnInterval: a moving ref at rest
// refreshes every interval in the background. The pass that starts the
// refresh looks for drift (one release-list read); the passes its Job's
// events wake within the same interval (the build running, then ending
// with the same revision) do not read Heroku again. Once the interval has
// passed since that look, the next pass looks again.
func TestARefreshBuildSpendsOneHerokuReadAnInterval(t *testing.T) {
	app := summaryApp(true)
	app.Finalizers = []string{herokunixv1.Finalizer}
	w := newFakeWorld(t, app)
	deployedOn(w.heroku, app)
	saveStatus(t, w, app)
	interval := app.Spec.IntervalDuration()
	now := testTime.Add(interval) // the refresh is due
	w.r.Now = func() time.Time { return now }
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(app)}
	pass := func(state build.State) ctrl.Result {
		t.Helper()
		w.build.state = state
		res, err := w.r.Reconcile(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	unchanged := &artifact.Result{Revision: app.Status.Revision, LockedFlake: app.Status.LockedFlake,
		Images: map[string]artifact.Image{"web": {ImageID: app.Status.Images["web"].ImageID, Digest: app.Status.Images["web"].Digest}}}

	pass(build.State{Phase: build.Running, Started: true}) // the resync that starts the refresh
	for range 4 {                                          // its Job's events: the pod starts, gets ready, ends
		now = now.Add(10 * time.Second)
		pass(build.State{Phase: build.Running})
	}
	now = now.Add(10 * time.Second)
	res := pass(build.State{Phase: build.Succeeded, Result: unchanged})

	if w.heroku.releaseLists != 1 {
		t.Errorf("%d release-list reads within one interval of a refresh build, want 1", w.heroku.releaseLists)
	}
	if got := len(w.build.ensured); got != 6 || w.build.ensured[0] == app.Status.Build.Job {
		t.Fatalf("builds ensured %v: want the refresh followed through 6 passes", w.build.ensured)
	}
	got := w.get(t, app)
	if c := condition(got, herokunixv1.ConditionReady); c != "True "+herokunixv1.ReasonReleased {
		t.Errorf("Ready = %q, want True %s", c, herokunixv1.ReasonReleased)
	}
	look := got.Status.LastDriftCheck
	if look == nil || !look.Time.Equal(&metav1.Time{Time: testTime.Add(interval)}) {
		t.Fatalf("lastDriftCheck %+v, want the look the refresh's first pass made", look)
	}
	// The resync comes when the next look is due (an interval after the
	// last), not earlier, and at most 10% later.
	if due := look.Time.Add(interval).Sub(now); res.RequeueAfter < due || res.RequeueAfter > due+interval/10 {
		t.Errorf("requeue after %s, want between %s and %s", res.RequeueAfter, due, due+interval/10)
	}

	now = look.Time.Add(interval)
	pass(build.State{Phase: build.Running, Started: true})
	if w.heroku.releaseLists != 2 {
		t.Errorf("%d release-list reads once the interval passed, want 2", w.heroku.releaseLists)
	}
}

// TestDriftIsLookedForAtMostOnceAnInterval: a look for drift is due once
// the interval passed, when the spec changed since the last look, or on a
// reconcile request; whatever else wakes a pass does not make one due.
func TestDriftIsLookedForAtMostOnceAnInterval(t *testing.T) {
	interval := herokunixv1.DefaultInterval
	cases := []struct {
		name      string
		last      *herokunixv1.DriftCheck
		since     time.Duration
		requested bool
		due       bool
	}{
		{name: "never looked", due: true},
		{name: "looked just now", last: &herokunixv1.DriftCheck{Generation: 2}, since: time.Second},
		{name: "looked a moment less than an interval ago", last: &herokunixv1.DriftCheck{Generation: 2}, since: interval - time.Second},
		{name: "looked an interval ago", last: &herokunixv1.DriftCheck{Generation: 2}, since: interval, due: true},
		{name: "a reconcile request", last: &herokunixv1.DriftCheck{Generation: 2}, since: time.Second, requested: true, due: true},
		{name: "the spec changed since", last: &herokunixv1.DriftCheck{Generation: 1}, since: time.Second, due: true},
		{name: "a look in the future (the clock went back)", last: &herokunixv1.DriftCheck{Generation: 2}, since: -time.Minute, due: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			app := summaryApp(true)
			app.Status.LastDriftCheck = tc.last
			if tc.last != nil {
				tc.last.Time = metav1.NewTime(testTime.Add(-tc.since))
			}
			if got := driftCheckDue(app, testTime, tc.requested); got != tc.due {
				t.Errorf("due = %v, want %v", got, tc.due)
			}
		})
	}
}

// TestObservedDriftStaysStalledUntilTheNextLook: a pass that does not look
// again keeps the verdict of the last look: observed drift stays Stalled
// (a Secret event does not make it Ready), anything else goes on.
func TestObservedDriftStaysStalledUntilTheNextLook(t *testing.T) {
	w, app := releaseWorld(t, true)
	app.Spec.DriftPolicy = herokunixv1.DriftPolicyObserve
	w.heroku.release("Deployed web (0123456789ab)", heroku.ReleaseSucceeded)
	p := w.pass(t, app)
	err := w.r.reconcileRelease(context.Background(), p)
	if got := endsAs(err); got != "Stalled "+herokunixv1.ReasonDriftDetected {
		t.Fatalf("the look ends as %q, want Stalled %s", got, herokunixv1.ReasonDriftDetected)
	}
	markStalled(app, herokunixv1.ReasonDriftDetected, err.Error())

	p = w.pass(t, app)
	p.now = testTime.Add(time.Minute)
	again := w.r.reconcileRelease(context.Background(), p)
	if w.heroku.releaseLists != 1 {
		t.Errorf("%d release-list reads, want the first look's only", w.heroku.releaseLists)
	}
	if again == nil || again.Error() != err.Error() || endsAs(again) != endsAs(err) {
		t.Errorf("a pass within the interval ends as %q (%v), want the last look's %q (%v)", endsAs(again), again, endsAs(err), err)
	}
}

// TestALookThatWaitsIsMadeAgain: a look that finds someone else's release
// in its release phase waits for it; the next pass, however soon, looks
// again (one read per look) and adopts it once it ran.
func TestALookThatWaitsIsMadeAgain(t *testing.T) {
	w, app := releaseWorld(t, true)
	recordDriftCheck(&pass{app: app, now: testTime}) // ours was just released
	saveStatus(t, w, app)
	config := w.heroku.release("Set FOO config vars", heroku.ReleasePending)

	look := func(requested string) (*herokunixv1.HerokuNixApp, error) {
		t.Helper()
		cur := w.get(t, app)
		before := cur.DeepCopy()
		p := w.pass(t, cur)
		p.before, p.requestedAt = before, requested
		err := w.r.reconcileRelease(context.Background(), p)
		if perr := w.c.Status().Patch(context.Background(), cur, client.MergeFrom(before)); perr != nil {
			t.Fatal(perr)
		}
		return cur, err
	}
	_, err := look("2026-01-02T03:00:00Z") // a reconcile request: the look is due
	if endsAs(err) != "Waiting "+herokunixv1.ReasonReleasePending {
		t.Fatalf("the look ends as %q, want Waiting %s", endsAs(err), herokunixv1.ReasonReleasePending)
	}
	config.Status, config.Current = heroku.ReleaseSucceeded, true
	w.heroku.releases[0].Current = false
	got, err := look("")
	if err != nil || w.heroku.releaseLists != 2 || got.Status.Release.Version != config.Version {
		t.Errorf("ends %v after %d release-list reads with release %+v; want the config release looked at again and adopted",
			err, w.heroku.releaseLists, got.Status.Release)
	}
	if got.Status.LastDriftCheck == nil {
		t.Errorf("the settled look is not recorded")
	}
}

// TestAFailedReadKeepsTheLastLook: a look Heroku turns away taught
// nothing; the last look's verdict stands until the next is due, so the
// passes that follow (a build Job ending during an outage) do not each try
// again and deepen the back-off.
func TestAFailedReadKeepsTheLastLook(t *testing.T) {
	w, app := releaseWorld(t, true)
	recordDriftCheck(&pass{app: app, now: testTime.Add(-time.Minute)})
	last := app.Status.LastDriftCheck.DeepCopy()
	w.heroku.err["ReleasesAfter"] = &heroku.Error{Kind: heroku.KindRateLimited, ID: "rate_limit", RetryAfter: time.Minute}
	p := w.pass(t, app)
	p.requestedAt = "2026-01-02T03:00:00Z"
	err := w.r.reconcileRelease(context.Background(), p)
	if endsAs(err) != "Retried "+herokunixv1.ReasonRateLimited+" after 1m0s" {
		t.Fatalf("ends as %q", endsAs(err))
	}
	if got := app.Status.LastDriftCheck; got == nil || !got.Time.Equal(&last.Time) {
		t.Errorf("lastDriftCheck %+v after a failed read, want the last look %+v kept", got, last)
	}
}

// TestOnlyABuildJobsEndWakesAPass: of a build Job's events, only those
// that can change what a pass makes of the build wake one.
func TestOnlyABuildJobsEndWakesAPass(t *testing.T) {
	job := func(active int32, conds ...batchv1.JobConditionType) *batchv1.Job {
		j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "shop-0123456789", Namespace: "team-a"}}
		j.Status.Active = active
		for _, c := range conds {
			j.Status.Conditions = append(j.Status.Conditions, batchv1.JobCondition{Type: c, Status: corev1.ConditionTrue})
		}
		return j
	}
	labelled := job(1)
	labelled.Labels = map[string]string{"x": "y"}
	notComplete := job(0)
	notComplete.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionFalse}}
	succeeded := job(0, batchv1.JobSuccessCriteriaMet)
	succeeded.Status.Succeeded = 1
	cases := []struct {
		name          string
		before, after *batchv1.Job
		wakes         bool
	}{
		{name: "made (by the pass that follows it)", after: job(0)},
		{name: "found ended when the cache lists Jobs", after: job(0, batchv1.JobComplete), wakes: true},
		{name: "its pod starts", before: job(0), after: job(1)},
		{name: "a label changes", before: job(1), after: labelled},
		{name: "a condition that is not True", before: job(1), after: notComplete},
		{name: "its pod succeeded, the Job not yet complete", before: job(1), after: succeeded},
		{name: "it completes", before: succeeded, after: job(0, batchv1.JobSuccessCriteriaMet, batchv1.JobComplete), wakes: true},
		{name: "it fails", before: job(1, batchv1.JobFailureTarget), after: job(0, batchv1.JobFailureTarget, batchv1.JobFailed), wakes: true},
		{name: "an ended Job changes again", before: job(0, batchv1.JobComplete), after: func() *batchv1.Job {
			j := job(0, batchv1.JobComplete)
			j.Labels = map[string]string{"x": "y"}
			return j
		}()},
		{name: "deleted while running", before: job(1), wakes: true},
		{name: "deleted once ended (history)", before: job(0, batchv1.JobComplete)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := jobEventMatters(tc.before, tc.after); got != tc.wakes {
				t.Errorf("wakes a pass: %v, want %v", got, tc.wakes)
			}
		})
	}
}
