package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/build"
)

// TestABuildFailingForAPassingReasonIsRetriedWithBackOff: a first build
// whose pod is evicted is retried, without a person, after a growing and
// jittered wait recorded on status; passes before that start nothing and
// write nothing; after maxBuildAttempts it stalls. Heroku is never
// written to.
func TestABuildFailingForAPassingReasonIsRetriedWithBackOff(t *testing.T) {
	app := summaryApp(false)
	w := newFakeWorld(t, app)
	now := testTime
	w.r.Now = func() time.Time { return now }
	w.build.state = build.State{Phase: build.Failed, Transient: build.TransientEvicted,
		Message: "build job failed: BackoffLimitExceeded: Job has reached the specified backoff limit"}
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(app)}
	reconcile := func() ctrl.Result {
		t.Helper()
		res, err := w.r.Reconcile(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	var lastWait time.Duration
	for attempt := int32(1); attempt < maxBuildAttempts; attempt++ {
		asked := len(w.build.ensured)
		res := reconcile()
		got := w.get(t, app)
		b := got.Status.Build
		if len(w.build.ensured) != asked+1 {
			t.Fatalf("attempt %d: builder asked %v, want one new build", attempt, w.build.ensured[asked:])
		}
		if b.TransientFailures != attempt || b.RetryTime == nil {
			t.Fatalf("attempt %d: status.build %+v, want %d failures and a retry time", attempt, b, attempt)
		}
		if c := condition(got, herokunixv1.ConditionStalled); c != "" {
			t.Fatalf("attempt %d: stalled (%s) while retries remain", attempt, c)
		}
		if c := condition(got, herokunixv1.ConditionReconciling); c != "True "+herokunixv1.ReasonBuildFailed {
			t.Errorf("attempt %d: Reconciling %q, want True BuildFailed", attempt, c)
		}
		wait := b.RetryTime.Sub(now)
		nominal := min(buildRetryCap, buildRetryBase<<(attempt-1))
		if wait < nominal-nominal/4-time.Second || wait > nominal+nominal/4 {
			t.Errorf("attempt %d: retried after %s, want %s ±25%%", attempt, wait, nominal)
		}
		if attempt > 1 && wait <= lastWait/2 {
			t.Errorf("attempt %d: wait %s does not grow from %s", attempt, wait, lastWait)
		}
		lastWait = wait
		if res.RequeueAfter != max(wait, time.Second) {
			t.Errorf("attempt %d: requeued after %s, want the retry's %s", attempt, res.RequeueAfter, wait)
		}

		// Passes before the retry is due start nothing and write nothing.
		before := got.ResourceVersion
		now = b.RetryTime.Add(-time.Second)
		reconcile()
		if again := w.get(t, app); len(w.build.ensured) != asked+1 || again.ResourceVersion != before {
			t.Fatalf("attempt %d: a pass before the retry started %v or wrote status", attempt, w.build.ensured[asked+1:])
		}
		now = b.RetryTime.Time
	}
	reconcile()
	got := w.get(t, app)
	if c := condition(got, herokunixv1.ConditionStalled); c != "True "+herokunixv1.ReasonBuildFailed {
		t.Fatalf("after %d failures Stalled = %q, want True BuildFailed", maxBuildAttempts, c)
	}
	if got.Status.Build.RetryTime != nil || !strings.Contains(findCondition(got, herokunixv1.ConditionStalled).Message, "6 times in a row") {
		t.Errorf("the last failure %+v does not say the retries are spent", findCondition(got, herokunixv1.ConditionStalled))
	}
	asked := len(w.build.ensured)
	now = now.Add(5 * time.Minute) // within the interval: a moving ref is not looked at again yet
	reconcile()
	if len(w.build.ensured) != asked {
		t.Errorf("a build whose retries are spent was run again: %v", w.build.ensured[asked:])
	}
	if len(w.heroku.writes) != 0 {
		t.Errorf("failed builds wrote to Heroku: %v", w.heroku.writes)
	}
}

// TestABuildFailingForItsOwnReasonIsNotRetried: an evaluation error is
// the build's own: it stalls at once, with no retry time.
func TestABuildFailingForItsOwnReasonIsNotRetried(t *testing.T) {
	app := summaryApp(false)
	w := newFakeWorld(t, app)
	w.build.state = build.State{Phase: build.Failed, Message: "build container exited 1: error: attribute 'web' missing"}
	_, _ = w.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(app)})
	got := w.get(t, app)
	if got.Status.Build.RetryTime != nil || got.Status.Build.TransientFailures != 0 {
		t.Errorf("status.build %+v schedules a retry of the build's own failure", got.Status.Build)
	}
	if c := condition(got, herokunixv1.ConditionStalled); c != "True "+herokunixv1.ReasonBuildFailed {
		t.Errorf("Stalled = %q, want True BuildFailed", c)
	}
}

// TestAFailedBuildRunsAgainWhenWhatItRanWithChanges: a failed build
// stalls until a fix: more resources, a repaired nix.conf Secret, or a
// repaired credentials Secret each start a new build; a pass with nothing
// changed starts none.
func TestAFailedBuildRunsAgainWhenWhatItRanWithChanges(t *testing.T) {
	nixConf := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "nix-conf", Namespace: "team-a"}, Data: map[string][]byte{"nix.conf": []byte("access-tokens = github.com=old")}}
	app := summaryApp(false)
	app.Spec.Build.NixConfigSecretRef = &herokunixv1.SecretKeyRef{Name: "nix-conf", Key: "nix.conf"}
	w := newFakeWorld(t, app, nixConf)
	w.build.state = build.State{Phase: build.Failed, Message: "build container exited 137: it ran out of memory (OOMKilled)"}
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(app)}
	pass := func() {
		t.Helper()
		if _, err := w.r.Reconcile(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	pass()
	if c := condition(w.get(t, app), herokunixv1.ConditionStalled); c != "True "+herokunixv1.ReasonBuildFailed {
		t.Fatalf("Stalled = %q after a failed build", c)
	}
	fixes := []struct {
		name string
		fix  func()
	}{
		{"more memory", func() {
			cur := w.get(t, app)
			cur.Spec.Build.Resources = &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("8Gi")}}
			if err := w.c.Update(context.Background(), cur); err != nil {
				t.Fatal(err)
			}
		}},
		{"a repaired nix.conf Secret", func() {
			var s corev1.Secret
			if err := w.c.Get(context.Background(), client.ObjectKeyFromObject(nixConf), &s); err != nil {
				t.Fatal(err)
			}
			s.Data["nix.conf"] = []byte("access-tokens = github.com=new")
			if err := w.c.Update(context.Background(), &s); err != nil {
				t.Fatal(err)
			}
		}},
		{"a repaired credentials Secret", func() {
			var s corev1.Secret
			if err := w.c.Get(context.Background(), client.ObjectKey{Namespace: "team-a", Name: "heroku"}, &s); err != nil {
				t.Fatal(err)
			}
			s.Labels = map[string]string{"rotated": "yes"}
			if err := w.c.Update(context.Background(), &s); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, f := range fixes {
		asked := len(w.build.ensured)
		pass()
		if len(w.build.ensured) != asked {
			t.Fatalf("before %s: a pass with nothing changed started %v", f.name, w.build.ensured[asked:])
		}
		f.fix()
		pass()
		if len(w.build.ensured) != asked+1 || w.build.ensured[asked] == w.build.ensured[asked-1] {
			t.Errorf("%s did not start a new build: asked %v", f.name, w.build.ensured)
		}
	}
}

// TestAChangeOfInputsDoesNotRebuildWhatBuilt: a rotated Secret or new
// resources leave a build that succeeded alone.
func TestAChangeOfInputsDoesNotRebuildWhatBuilt(t *testing.T) {
	app := summaryApp(true)
	app.Status.Build.Inputs = build.DesiredForSecrets(app, testTime, false, build.SecretVersions{Credentials: "1"}).Inputs
	app.Spec.Build.Resources = &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("8Gi")}}
	w := newFakeWorld(t)
	p := w.pass(t, app)
	if err := w.r.reconcileBuild(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if len(w.build.ensured) != 0 {
		t.Errorf("new resources rebuilt a spec that built: %v", w.build.ensured)
	}
}

// TestABackgroundBuildFailingForAPassingReasonKeepsTheReleaseReady: a
// refresh whose pod is evicted leaves the deployed images Ready and comes
// back for its retry, not at the next interval.
func TestABackgroundBuildFailingForAPassingReasonKeepsTheReleaseReady(t *testing.T) {
	app := summaryApp(true)
	app.Annotations = map[string]string{herokunixv1.ReconcileRequestAnnotation: "2026-01-02T03:00:00Z"}
	w := newFakeWorld(t, app)
	deployedOn(w.heroku, app)
	if err := w.c.Status().Update(context.Background(), app); err != nil {
		t.Fatal(err)
	}
	w.build.state = build.State{Phase: build.Failed, Transient: build.TransientNetwork,
		Message: "build container exited 1: error: unable to download 'https://github.com/acme/shop/archive/main.tar.gz': HTTP error 503"}
	res, err := w.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(app)})
	if err != nil {
		t.Fatal(err)
	}
	got := w.get(t, app)
	if c := condition(got, herokunixv1.ConditionReady); c != "True "+herokunixv1.ReasonReleased {
		t.Errorf("Ready = %q after a failed refresh, want True Released", c)
	}
	b := got.Status.Build
	if b.RetryTime == nil || b.TransientFailures != 1 {
		t.Fatalf("status.build %+v schedules no retry", b)
	}
	if want := b.RetryTime.Sub(testTime); res.RequeueAfter != max(want, time.Second) {
		t.Errorf("requeued after %s, want the retry's %s", res.RequeueAfter, want)
	}
}
