package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/artifact"
	"github.com/herokunix/herokunix/internal/build"
	"github.com/herokunix/herokunix/internal/heroku"
)

// panickingHeroku is a Heroku client with a bug: reading the app panics.
type panickingHeroku struct{ *fakeHeroku }

func (panickingHeroku) App(context.Context, string) (*heroku.App, error) {
	var apps map[string]*heroku.App
	apps["acme-shop"].Name = "boom" // a nil map: the kind of bug a review misses
	return nil, nil
}

func (w *fakeWorld) get(t *testing.T, app *herokunixv1.HerokuNixApp) *herokunixv1.HerokuNixApp {
	t.Helper()
	var got herokunixv1.HerokuNixApp
	if err := w.c.Get(context.Background(), client.ObjectKeyFromObject(app), &got); err != nil {
		t.Fatal(err)
	}
	return &got
}

// TestAPanickingStepEndsAsAnInternalErrorNotReady: a step that panics on a
// deployed (Ready) resource ends the pass as a retried InternalError, never
// as Ready=True from the summary.
func TestAPanickingStepEndsAsAnInternalErrorNotReady(t *testing.T) {
	app := summaryApp(true)
	w := newFakeWorld(t, app)
	w.r.Heroku = &HerokuClients{New: func(string) (HerokuAPI, error) { return panickingHeroku{w.heroku}, nil }}

	res, err := w.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(app)})

	if err == nil || res.RequeueAfter != 0 {
		t.Errorf("result %+v, %v; want an error retried with back-off", res, err)
	}
	got := w.get(t, app)
	if c := condition(got, herokunixv1.ConditionReady); c != "False "+herokunixv1.ReasonInternalError {
		t.Errorf("Ready = %q after a panic, want False %s", c, herokunixv1.ReasonInternalError)
	}
	if c := condition(got, herokunixv1.ConditionReconciling); c != "True "+herokunixv1.ReasonInternalError {
		t.Errorf("Reconciling = %q after a panic", c)
	}
}

// TestAKeyWithATrailingNewlineStalls: `echo key | kubectl create secret`
// stores the key with a newline, which Heroku refuses for ever: the pass
// stalls saying so, and the key is not printed.
func TestAKeyWithATrailingNewlineStalls(t *testing.T) {
	app := summaryApp(false)
	w := newFakeWorld(t, app)
	var secret corev1.Secret
	if err := w.c.Get(context.Background(), client.ObjectKey{Namespace: "team-a", Name: "heroku"}, &secret); err != nil {
		t.Fatal(err)
	}
	secret.Data["apiKey"] = []byte(testAPIKey + "\n")
	if err := w.c.Update(context.Background(), &secret); err != nil {
		t.Fatal(err)
	}

	err := w.r.reconcileCredentials(context.Background(), &pass{app: app, now: testTime})

	if got := endsAs(err); got != "Stalled "+herokunixv1.ReasonCredentialsInvalid {
		t.Fatalf("ends as %q (%v), want Stalled %s", got, err, herokunixv1.ReasonCredentialsInvalid)
	}
	if !strings.Contains(err.Error(), "ends with a newline") || strings.Contains(err.Error(), testAPIKey) {
		t.Errorf("message %q should say the key ends with a newline without printing it", err)
	}
}

// TestSecretsTheManagerMayNotReadStallSayingWhatToGrant: an install whose
// RBAC was narrowed answers a Secret read with Forbidden; for the key and
// for a config var alike the pass stalls with ReadForbidden, naming the
// Secret and the grant, instead of retrying a generic error for ever.
func TestSecretsTheManagerMayNotReadStallSayingWhatToGrant(t *testing.T) {
	app := summaryApp(false)
	w := newFakeWorld(t, app)
	forbidden := interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
		if _, ok := obj.(*corev1.Secret); ok {
			return apierrors.NewForbidden(corev1.Resource("secrets"), key.Name, fmt.Errorf("RBAC: access denied"))
		}
		return c.Get(ctx, key, obj, opts...)
	}}
	w.r.APIReader = interceptor.NewClient(w.c.(client.WithWatch), forbidden)

	err := w.r.reconcileCredentials(context.Background(), &pass{app: app, now: testTime})
	if got := endsAs(err); got != "Stalled "+herokunixv1.ReasonReadForbidden {
		t.Fatalf("reading the key ends as %q (%v), want Stalled %s", got, err, herokunixv1.ReasonReadForbidden)
	}
	if !strings.Contains(err.Error(), "Secret team-a/heroku") || !strings.Contains(err.Error(), "lacks get on secrets in namespace team-a") {
		t.Errorf("message %q should name the Secret and the missing grant", err)
	}

	app.Spec.Config = []herokunixv1.ConfigVar{{Name: "DB", ValueFrom: &herokunixv1.ConfigVarSource{
		SecretKeyRef: &herokunixv1.KeyRef{Name: "db", Key: "url"}}}}
	_, err = w.r.configValues(context.Background(), app)
	if got := endsAs(err); got != "Stalled "+herokunixv1.ReasonReadForbidden || !strings.Contains(err.Error(), "config var DB") {
		t.Errorf("reading a config var's Secret ends as %q (%v), want Stalled %s naming the var", got, err, herokunixv1.ReasonReadForbidden)
	}
}

// historyBuilder is a cluster where every build finishes at once with the
// next revision, and a finished build's Job stays (as Jobs do for a day):
// asked again for its name, it answers with that old result.
type historyBuilder struct {
	fakeBuilder
	results map[string]build.State
}

func (b *historyBuilder) Ensure(_ context.Context, _ *herokunixv1.HerokuNixApp, d build.Desired, _ string) (build.State, error) {
	b.ensured = append(b.ensured, d.Name)
	if st, ok := b.results[d.Name]; ok {
		return st, nil
	}
	rev := fmt.Sprintf("%040d", len(b.results)+1)
	st := build.State{Phase: build.Succeeded, Result: &artifact.Result{Revision: rev, LockedFlake: "github:acme/shop/" + rev,
		Images: map[string]artifact.Image{"web": {ImageID: "sha256:" + rev + rev[:24], Digest: "sha256:" + rev[:24] + rev}}}}
	b.results[d.Name] = st
	return st, nil
}

// TestARevertedSpecIsBuiltAnewNotReleasedFromItsOldBuild: spec A is built
// (revision 1), then spec B (revision 2) runs; reverting to A must not
// take A's old build (revision 1, older than what runs) for its images.
func TestARevertedSpecIsBuiltAnewNotReleasedFromItsOldBuild(t *testing.T) {
	app := summaryApp(false)
	w := newFakeWorld(t, app)
	hb := &historyBuilder{results: map[string]build.State{}}
	w.r.Builder = hb
	buildSpec := func(cmd string) string {
		t.Helper()
		app.Spec.Processes["web"] = herokunixv1.Process{Attribute: "packages.x86_64-linux.web", Command: []string{cmd}}
		if err := w.r.reconcileBuild(context.Background(), w.pass(t, app)); err != nil {
			t.Fatal(err)
		}
		return app.Status.Revision
	}

	first := buildSpec("bin/server")
	second := buildSpec("bin/server-v2")
	reverted := buildSpec("bin/server")

	if reverted == first || reverted == second {
		t.Errorf("the revert deploys revision %s (A built %s, B %s; builds asked %v): want a new build", reverted, first, second, hb.ensured)
	}
}

// TestARequestIsConsumedByTheBuildItStarted: a reconcile request refreshes
// a moving ref; while Heroku is down every pass fails after the build, and
// the request must not start another build each time.
func TestARequestIsConsumedByTheBuildItStarted(t *testing.T) {
	app := summaryApp(true)
	app.Annotations = map[string]string{herokunixv1.ReconcileRequestAnnotation: "2026-01-02T03:00:00Z"}
	w := newFakeWorld(t, app)
	hb := &historyBuilder{results: map[string]build.State{}}
	w.r.Builder = hb
	down := &heroku.Error{Kind: heroku.KindUnavailable, StatusCode: 503, ID: "unavailable", Message: "Service Unavailable"}
	w.heroku.err["CurrentRelease"], w.heroku.err["SendImages"] = down, down
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(app)}

	for range 3 {
		_, _ = w.r.Reconcile(context.Background(), req)
		if c := condition(w.get(t, app), herokunixv1.ConditionReady); c != "False "+herokunixv1.ReasonHerokuUnavailable {
			t.Fatalf("Ready = %q while Heroku is down", c)
		}
	}

	if len(hb.results) != 1 {
		t.Errorf("%d builds started by one request during an outage (%v), want 1", len(hb.results), hb.ensured)
	}
	if got := w.get(t, app).Status.LastHandledReconcileAt; got != "2026-01-02T03:00:00Z" {
		t.Errorf("lastHandledReconcileAt %q: the request is not recorded as handled by its build", got)
	}
}

// TestHerokuTurningAPassAwayBacksOffWithoutStatusWrites: while Heroku
// turns a resource away (rate limited with the client's short hint, or
// unavailable), its retries back off exponentially, never sooner than
// Heroku asked, and a retry that fails alike writes no status (its
// messages carry no countdown or request id). A pass that gets through
// starts the back-off over.
func TestHerokuTurningAPassAwayBacksOffWithoutStatusWrites(t *testing.T) {
	turnedAway := map[string]func(i int) error{
		herokunixv1.ReasonRateLimited: func(i int) error {
			return &heroku.Error{Kind: heroku.KindRateLimited, Message: "herokunix's share of the Heroku rate limit is spent",
				RetryAfter: time.Second + time.Duration(i)*100*time.Millisecond}
		},
		herokunixv1.ReasonHerokuUnavailable: func(i int) error {
			return &heroku.Error{Kind: heroku.KindUnavailable, StatusCode: 503, ID: "unavailable", Message: "Service Unavailable",
				RetryAfter: 15 * time.Second, RequestID: fmt.Sprintf("req-%d", i)}
		},
	}
	for reason, herokuErr := range turnedAway {
		t.Run(reason, func(t *testing.T) {
			app := summaryApp(true)
			w := newFakeWorld(t, app)
			req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(app)}
			pass := func(i int) (time.Duration, string) {
				t.Helper()
				w.heroku.err["App"], w.heroku.err["ReleasesAfter"] = herokuErr(i), herokuErr(i)
				res, err := w.r.Reconcile(context.Background(), req)
				if err != nil {
					t.Fatalf("pass %d: %v; want a requeue after the back-off", i, err)
				}
				got := w.get(t, app)
				if c := condition(got, herokunixv1.ConditionReady); c != "False "+reason {
					t.Fatalf("pass %d: Ready = %q", i, c)
				}
				return res.RequeueAfter, got.ResourceVersion
			}

			var delays []time.Duration
			first, version := pass(0)
			delays = append(delays, first)
			for i := 1; i < 8; i++ {
				d, v := pass(i)
				if v != version {
					t.Errorf("pass %d wrote status (resourceVersion %s -> %s) though nothing but a countdown changed", i, version, v)
				}
				if d < delays[len(delays)-1] || d < herokuErr(i).(*heroku.Error).RetryAfter {
					t.Errorf("pass %d retries after %s, sooner than the one before (%v) or Heroku's hint", i, d, delays)
				}
				delays = append(delays, d)
			}
			if last := delays[len(delays)-1]; last < 8*max(first, 15*time.Second) || last > retryCap {
				t.Errorf("retries after %v: want exponential growth up to %s", delays, retryCap)
			}

			// Heroku serves again: the pass gets through, and the next
			// failure backs off from the start.
			delete(w.heroku.err, "App")
			delete(w.heroku.err, "ReleasesAfter")
			if _, err := w.r.Reconcile(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			// An interval later the look for drift is due again (and a
			// refresh of the moving ref, which runs meanwhile).
			w.r.Now = func() time.Time { return testTime.Add(app.Spec.IntervalDuration()) }
			w.build.state = build.State{Phase: build.Running}
			if d, _ := pass(0); d > max(retryBase, herokuErr(0).(*heroku.Error).RetryAfter) {
				t.Errorf("after a pass got through, the next failure retries after %s, want the back-off to start over", d)
			}
		})
	}
}

// countingReader counts the reads that reach the API server.
type countingReader struct {
	client.Reader
	gets int
}

func (c *countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	c.gets++
	return c.Reader.Get(ctx, key, obj, opts...)
}

// TestAnUnchangedSecretIsNotReadAgain: passes (a retry storm) read the
// credentials Secret from the API server once, and again when it changed.
func TestAnUnchangedSecretIsNotReadAgain(t *testing.T) {
	app := summaryApp(false)
	w := newFakeWorld(t, app)
	reads := &countingReader{Reader: w.c}
	w.r.APIReader = reads
	for range 5 {
		if key, _, err := w.r.apiKey(context.Background(), app); err != nil || key != testAPIKey {
			t.Fatalf("key %q, %v", key, err)
		}
	}
	if reads.gets != 1 {
		t.Errorf("%d reads of an unchanged Secret from the API server in 5 passes, want 1", reads.gets)
	}

	var secret corev1.Secret
	if err := w.c.Get(context.Background(), client.ObjectKey{Namespace: "team-a", Name: "heroku"}, &secret); err != nil {
		t.Fatal(err)
	}
	secret.Data["apiKey"] = []byte("hk-rotated-key")
	if err := w.c.Update(context.Background(), &secret); err != nil {
		t.Fatal(err)
	}
	if key, _, err := w.r.apiKey(context.Background(), app); err != nil || key != "hk-rotated-key" {
		t.Errorf("after a rotation the key is %q, %v; want the new key", key, err)
	}
}

// TestADeletionRetryFailingAlikeWritesNoStatus: scaling to zero before a
// deletion, retried while Heroku is down, keeps its condition messages
// (no request id, no countdown) so the retries write no status.
func TestADeletionRetryFailingAlikeWritesNoStatus(t *testing.T) {
	app := summaryApp(true)
	app.Spec.DeletionPolicy = herokunixv1.DeletionPolicyScaleToZero
	app.Finalizers = []string{herokunixv1.Finalizer}
	app.DeletionTimestamp = &metav1.Time{Time: testTime}
	w := newFakeWorld(t, app)
	w.r.DeletionGracePeriod = time.Hour
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(app)}
	var versions []string
	for i := range 3 {
		w.heroku.err["Formation"] = &heroku.Error{Kind: heroku.KindUnavailable, StatusCode: 503, ID: "unavailable",
			RetryAfter: time.Duration(i+1) * time.Second, RequestID: fmt.Sprintf("req-%d", i)}
		if _, err := w.r.Reconcile(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		got := w.get(t, app)
		if c := condition(got, herokunixv1.ConditionReady); c != "False "+herokunixv1.ReasonDeleting {
			t.Fatalf("Ready = %q while scaling to zero is retried", c)
		}
		versions = append(versions, got.ResourceVersion)
	}
	if versions[1] != versions[0] || versions[2] != versions[0] {
		t.Errorf("retries that failed alike wrote status: resourceVersions %v", versions)
	}
}
