package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/build"
	"github.com/herokunix/herokunix/internal/heroku"
)

// releaseWorld is a fake world holding app (built, maybe released) as the
// API server has it, and a pass over it.
func releaseWorld(t *testing.T, deployed bool) (*fakeWorld, *herokunixv1.HerokuNixApp) {
	t.Helper()
	app := summaryApp(true)
	app.Status.Release = nil
	w := newFakeWorld(t, app)
	if deployed {
		deployedOn(w.heroku, app)
	}
	return w, app
}

// runRelease runs the release step as a pass does: from the object on
// the API server, ending with the pass's status patch.
func runRelease(t *testing.T, w *fakeWorld, app *herokunixv1.HerokuNixApp) (*herokunixv1.HerokuNixApp, error) {
	t.Helper()
	cur := &herokunixv1.HerokuNixApp{}
	if err := w.c.Get(context.Background(), client.ObjectKeyFromObject(app), cur); err != nil {
		t.Fatal(err)
	}
	before := cur.DeepCopy()
	p := w.pass(t, cur)
	p.before, p.now = before, w.r.now()
	err := w.r.reconcileRelease(context.Background(), p)
	if perr := w.c.Status().Patch(context.Background(), cur, client.MergeFrom(before)); perr != nil {
		t.Fatal(perr)
	}
	return cur, err
}

// saveStatus stores app's status as the API server's.
func saveStatus(t *testing.T, w *fakeWorld, app *herokunixv1.HerokuNixApp) {
	t.Helper()
	cur := &herokunixv1.HerokuNixApp{}
	if err := w.c.Get(context.Background(), client.ObjectKeyFromObject(app), cur); err != nil {
		t.Fatal(err)
	}
	cur.Status = *app.Status.DeepCopy()
	if err := w.c.Status().Update(context.Background(), cur); err != nil {
		t.Fatal(err)
	}
}

// crashAfterPatch makes the pass stop right after the formation PATCH,
// before anything else (the status patch included) happens.
type crashAfterPatch struct{ *fakeHeroku }

var errCrash = fmt.Errorf("the controller stopped")

func (c crashAfterPatch) SendImages(ctx context.Context, app string, images map[string]string) error {
	if err := c.fakeHeroku.SendImages(ctx, app, images); err != nil {
		return err
	}
	return errCrash
}

// A crash between the PATCH and the status patch leaves the intent on
// status; the next passes make no second release whether the release is
// still in its release phase, succeeded, or failed.
func TestACrashBetweenThePatchAndTheStatusPatchMakesOneRelease(t *testing.T) {
	for _, end := range []string{heroku.ReleaseSucceeded, heroku.ReleaseFailed} {
		t.Run("release phase "+end, func(t *testing.T) {
			w, app := releaseWorld(t, false)
			w.heroku.pendingReleases = true
			fake := w.heroku
			w.r.Heroku = &HerokuClients{New: func(string) (HerokuAPI, error) { return crashAfterPatch{fake}, nil }}
			if _, err := runRelease(t, w, app); err == nil || !strings.Contains(err.Error(), errCrash.Error()) {
				t.Fatalf("first pass: %v", err)
			}
			w.r.Heroku = &HerokuClients{New: func(string) (HerokuAPI, error) { return fake, nil }}
			made := len(fake.releases)
			cur := &herokunixv1.HerokuNixApp{}
			_ = w.c.Get(context.Background(), client.ObjectKeyFromObject(app), cur)
			if cur.Status.ReleaseIntent == nil || cur.Status.Release != nil {
				t.Fatalf("after the crash: intent %+v, release %+v; want the intent only", cur.Status.ReleaseIntent, cur.Status.Release)
			}

			// The release phase still runs: wait, without a PATCH.
			writes := len(fake.writes)
			got, err := runRelease(t, w, app)
			if endsAs(err) != "Waiting "+herokunixv1.ReasonReleasePending || len(fake.writes) != writes {
				t.Errorf("while pending: ends %q, writes %v", endsAs(err), fake.writes[writes:])
			}
			_ = got

			fake.latest().Status = end
			if end == heroku.ReleaseSucceeded {
				fake.latest().Current = true
				for _, r := range fake.releases[:len(fake.releases)-1] {
					r.Current = false
				}
			}
			got, err = runRelease(t, w, app)
			if len(fake.releases) != made {
				t.Errorf("made %d more releases after the crash", len(fake.releases)-made)
			}
			if got.Status.Release == nil || got.Status.Release.Version != made || got.Status.ReleaseIntent != nil {
				t.Errorf("status release %+v, intent %+v; want v%d adopted and the intent cleared", got.Status.Release, got.Status.ReleaseIntent, made)
			}
			want := ""
			if end == heroku.ReleaseFailed {
				want = "Stalled " + herokunixv1.ReasonReleasePhaseFailed
			}
			if endsAs(err) != want {
				t.Errorf("ends %q, want %q (%v)", endsAs(err), want, err)
			}
		})
	}
}

// A crash before the PATCH (intent recorded, nothing sent) sends it on
// the next pass: one release.
func TestAnIntentWithNothingSentIsSentOnce(t *testing.T) {
	w, app := releaseWorld(t, false)
	app.Status.ReleaseIntent = &herokunixv1.ReleaseIntent{Images: builtImageIDs(app), After: 0}
	saveStatus(t, w, app)
	got, err := runRelease(t, w, app)
	if err != nil || len(w.heroku.releases) != 1 || got.Status.Release == nil || got.Status.Release.Version != 1 || got.Status.ReleaseIntent != nil {
		t.Errorf("ends %v; releases %d; status %+v", err, len(w.heroku.releases), got.Status)
	}
}

// Someone else's release in its release phase (a deploy, or a config var
// change while the formation holds a release image) is waited for with one
// read per look and a growing interval: no PATCH, no app read.
func TestSomeoneElsesPendingReleaseIsWaitedForWithOneReadPerLook(t *testing.T) {
	for name, deployed := range map[string]bool{"before the first release": false, "on a resync": true} {
		t.Run(name, func(t *testing.T) {
			w, app := releaseWorld(t, deployed)
			w.heroku.release("Set FOO config vars", heroku.ReleasePending)
			var looks []time.Duration
			for _, age := range []time.Duration{0, 4 * time.Minute, time.Hour} {
				w.r.Now = func() time.Time { return testTime.Add(age) }
				writes, appReads := len(w.heroku.writes), w.heroku.appReads
				_, err := runRelease(t, w, app)
				if w.heroku.appReads != appReads {
					t.Errorf("read the app while someone else's release was pending")
				}
				var wt *waiting
				if endsAs(err) != "Waiting "+herokunixv1.ReasonReleasePending || !asWaiting(err, &wt) {
					t.Fatalf("ends %q (%v)", endsAs(err), err)
				}
				if len(w.heroku.writes) != writes {
					t.Errorf("wrote %v while someone else's release was pending", w.heroku.writes[writes:])
				}
				looks = append(looks, wt.After)
			}
			if !(looks[0] < looks[1] && looks[1] <= looks[2] && looks[2] <= maxPendingPoll) {
				t.Errorf("intervals %v do not grow within %v", looks, maxPendingPoll)
			}
		})
	}
}

func asWaiting(err error, w **waiting) bool {
	x, ok := err.(*waiting)
	if ok {
		*w = x
	}
	return ok
}

// When someone else's release fails, Heroku keeps running the current
// release, which is this resource's: it stays Ready, releases nothing.
func TestSomeoneElsesFailedReleaseLeavesOursRunning(t *testing.T) {
	w, app := releaseWorld(t, true)
	saveStatus(t, w, app)
	w.heroku.release("Set FOO config vars", heroku.ReleaseFailed)
	got, err := runRelease(t, w, app)
	if err != nil || len(w.heroku.writes) != 0 || got.Status.Release.Version != 1 {
		t.Errorf("ends %v, writes %v, release %+v; want ours kept, nothing written", err, w.heroku.writes, got.Status.Release)
	}
}

// Drift is seen however many releases were made since ours: all pages.
func TestDriftIsSeenAfterManyReleases(t *testing.T) {
	w, app := releaseWorld(t, true)
	saveStatus(t, w, app)
	for range 60 {
		w.heroku.release("Set FOO config vars", heroku.ReleaseSucceeded)
	}
	w.heroku.release("Deployed web (0123456789ab)", heroku.ReleaseSucceeded)
	got, err := runRelease(t, w, app)
	if err != nil || !slices.Equal(w.heroku.writes, []string{"release"}) || got.Status.Release.Version != 63 {
		t.Errorf("ends %v, writes %v, release %+v; want the drift at v62 corrected as v63", err, w.heroku.writes, got.Status.Release)
	}
}

// A followed release that turns out expired or with a null status is not
// success, and does not loop: the images are sent again once, Heroku
// ignores them, and its current release is adopted.
func TestAnExpiredOrNullStatusIsNeverSuccess(t *testing.T) {
	for _, status := range []string{heroku.ReleaseExpired, ""} {
		t.Run(fmt.Sprintf("%q", status), func(t *testing.T) {
			w, app := releaseWorld(t, true)
			app.Status.Release.Status = heroku.ReleasePending
			setCondition(app, herokunixv1.ConditionReleased, metav1.ConditionFalse, herokunixv1.ReasonReleasePending, "pending")
			saveStatus(t, w, app)
			w.heroku.releases[0].Status = status
			got, err := runRelease(t, w, app)
			if endsAs(err) == "" || condition(got, herokunixv1.ConditionReleased) == "True "+herokunixv1.ReasonReleased {
				t.Fatalf("a %q release counted as success: %v, %s", status, err, condition(got, herokunixv1.ConditionReleased))
			}
			got, err = runRelease(t, w, app)
			if err != nil || len(w.heroku.releases) != 1 || got.Status.Release == nil || got.Status.Release.Version != 1 {
				t.Errorf("second pass: %v; releases %d; status release %+v", err, len(w.heroku.releases), got.Status.Release)
			}
		})
	}
}

// A process type herokunix released that leaves the spec is removed from
// the app before the next release, with an event; "release" above all.
func TestTypesThatLeftTheSpecAreRemovedBeforeTheRelease(t *testing.T) {
	w, app := releaseWorld(t, false)
	old := builtImageIDs(app)
	old["release"] = "sha256:" + strings.Repeat("e", 64)
	old["worker"] = "sha256:" + strings.Repeat("f", 64)
	rel := w.heroku.release(deployDescription(old), heroku.ReleaseSucceeded)
	app.Status.Release = &herokunixv1.ReleaseStatus{ID: rel.ID, Version: rel.Version, Name: "v1", Status: rel.Status, Images: old}
	app.Status.Images["web"] = herokunixv1.ImageStatus{ImageID: "sha256:" + strings.Repeat("a", 64), Digest: "sha256:" + strings.Repeat("b", 64)}
	saveStatus(t, w, app)
	got, err := runRelease(t, w, app)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"remove release", "remove worker", "release"}; !slices.Equal(w.heroku.writes, want) {
		t.Errorf("writes %v, want %v", w.heroku.writes, want)
	}
	if got.Status.Release.Version != 2 {
		t.Errorf("release %+v", got.Status.Release)
	}
	n := 0
	for _, e := range w.events.events {
		if strings.Contains(e, "ProcessTypeRemoved") {
			n++
		}
	}
	if n != 2 {
		t.Errorf("events %v, want one ProcessTypeRemoved per type", w.events.events)
	}
}

// A Fir app stops with UnsupportedGeneration before any build starts (so
// before the build's push reaches the registry), saying to use a Cedar app
// and never to change the stack.
func TestAFirAppStopsBeforeABuild(t *testing.T) {
	app := summaryApp(false)
	w := newFakeWorld(t, app)
	w.heroku.generation = heroku.GenerationFir
	w.heroku.stack = "cnb"
	w.build.state = build.State{Phase: build.Running, Started: true}
	err := w.r.reconcileBuild(context.Background(), w.pass(t, app))
	if endsAs(err) != "Stalled "+herokunixv1.ReasonUnsupportedGeneration {
		t.Fatalf("ends %q (%v)", endsAs(err), err)
	}
	if len(w.build.ensured) != 0 {
		t.Errorf("a build was started: %v", w.build.ensured)
	}
	if msg := err.Error(); !strings.Contains(msg, "Cedar") || strings.Contains(msg, "stack:set") {
		t.Errorf("message %q must say to use a Cedar app, never stack:set", msg)
	}
}

// Correcting drift after this resource's release expired (Heroku destroyed
// its artifacts, so its images may be gone) pushes the images again first:
// a re-push build is asked for and nothing is released; once it has run,
// the images are released.
func TestAnExpiredReleaseIsRepushedBeforeItsImagesAreReleasedAgain(t *testing.T) {
	w, app := releaseWorld(t, true)
	saveStatus(t, w, app)
	w.heroku.releases[0].Status = heroku.ReleaseExpired
	w.heroku.release("Deployed web (0123456789ab)", heroku.ReleaseSucceeded)
	got, err := runRelease(t, w, app)
	if endsAs(err) != "Waiting "+herokunixv1.ReasonProgressing || len(w.heroku.writes) != 0 {
		t.Fatalf("ends %q, writes %v; want a wait for the re-push and no write", endsAs(err), w.heroku.writes)
	}
	if !got.Status.Build.Repush || got.Status.Release.Status != heroku.ReleaseExpired {
		t.Fatalf("build %+v, release %+v: want a re-push asked for and the release recorded expired", got.Status.Build, got.Status.Release)
	}
	if d := build.DesiredFor(got, testTime, false); d.Name == got.Status.Build.Job || d.Background || d.Request.SkipIfRevision != "" {
		t.Errorf("desired build %+v: want a new foreground build that skips nothing", d)
	}

	// The re-push ran (same images: the build is reproducible).
	got.Status.Build.Repush = false
	saveStatus(t, w, got)
	got, err = runRelease(t, w, got)
	if err != nil || !slices.Equal(w.heroku.writes, []string{"release"}) || got.Status.Release.Version != 3 {
		t.Errorf("after the re-push: %v, writes %v, release %+v; want the images released as v3", err, w.heroku.writes, got.Status.Release)
	}
}
