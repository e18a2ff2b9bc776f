package controllers

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
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
